/// The audit trail: the event model and writer the proxy uses, and the audit/spend/usage query APIs.
/// Its table and routes arrive with the data plane; this namespace marks the module seam of DESIGN §2.
public enum AuditModule {}
