// Every module that builds routes on HTTPLayer also names HTTP fields.
@_exported import HTTPTypes
