import KeybrakeCore
import Storage

extension ProxyPipeline {
    /// Admission (DESIGN §16): a seat of the request's tenant, at once when its share has one free (one lock, no
    /// suspension), else after a bounded fair wait. False: refused (`tenant_busy`). A seat covers database work
    /// only — pricing, claim, reserve, a refusal's row —, never a client's upload or a vendor's answer: it is taken
    /// once the body is in and given back around a price lookup, an identical request's wait and the forward.
    @inline(__always)
    func admit(_ r: inout ProxiedRequest) async -> Bool {
        guard let gate else { return true }
        let tenant = r.key.tenantId
        if gate.tryAdmit(tenant) {
            r.holdsSeat = true
            return true
        }
        r.holdsSeat = await gate.wait(tenant)
        return r.holdsSeat
    }

    var tenantBusy: KeybrakeError { TenantGate.busy(gate?.settings ?? TenantGate.Settings()) }

    @inline(__always)
    func releaseSeat(_ r: inout ProxiedRequest) {
        guard r.holdsSeat else { return }
        r.holdsSeat = false
        gate?.release(r.key.tenantId)
    }
}
