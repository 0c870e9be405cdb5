/// The data plane: the request pipeline, vendor adapters, spend ledger, idempotency store and forwarder.
/// Its routes arrive with the data plane; this namespace marks the module seam of DESIGN §2.
public enum ProxyModule {}
