import HTTPLayer

/// A newest-first list paged by cursor (the keys and audit pages): each read asks for one row more than a page, and
/// that extra row is what says an older page exists. A cursor names the last row shown (`PageCursor`).
struct Paging {
    let kind: String
    /// The id the page starts after; nil on the first page.
    let after: String?

    /// Reads the `cursor` query parameter (absent or empty: the first page). One that does not decode to an id of
    /// this list is answered 400 with `badCursor`, never read as "the first page".
    init(cursor raw: String?, kind: String, idPrefix: String) throws {
        self.kind = kind
        guard let raw, !raw.isEmpty else { after = nil; return }
        guard let id = PageCursor.decode(raw, kind: kind, idPrefix: idPrefix) else { throw DashboardController.badCursor }
        after = id
    }

    /// The rows of this page out of the `size + 1` read, the link back to the first page (nil on it) and the link
    /// to the next one (nil on the last), both on `path` with the list's own `query` kept.
    func page<Row>(_ fetched: [Row], size: Int, path: String, query: [(String, String?)] = [],
                   id: (Row) -> String) -> (rows: [Row], firstHref: String?, nextHref: String?) {
        let rows = Array(fetched.prefix(size))
        let next = fetched.count > size
            ? rows.last.map { path + queryString(query + [("cursor", PageCursor.encode(id($0), kind: kind))]) } : nil
        return (rows, after == nil ? nil : path + queryString(query), next)
    }
}
