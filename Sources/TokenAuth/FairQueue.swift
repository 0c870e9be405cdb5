/// Waiting work, served round-robin over *shares* (a tenant), and within a share round-robin over *flows* (a client
/// address); FIFO within a flow. A newcomer waits behind at most one element of every share (and flow) ahead of it,
/// however much those have queued: a busy tenant waits behind its own work, a stranger behind his own attempts.
struct FairQueue<Element> {
    struct Share {
        var flows: [String: [Element]] = [:]
        /// Flows with waiting elements, the next to serve first.
        var order: [String] = []
        var count = 0
    }

    private var shares: [String: Share] = [:]
    /// Shares with waiting elements, the next to serve first.
    private var order: [String] = []
    private(set) var count = 0

    var isEmpty: Bool { count == 0 }

    mutating func append(_ element: Element, share: String, flow: String) {
        if shares[share] == nil {
            shares[share] = Share()
            order.append(share)
        }
        if shares[share]!.flows[flow] == nil { shares[share]!.order.append(flow) }
        shares[share]!.flows[flow, default: []].append(element)
        shares[share]!.count += 1
        count += 1
    }

    /// The first element of the next flow of the next share; both move to the back of their lines.
    mutating func popNext() -> Element? {
        guard !order.isEmpty else { return nil }
        let shareKey = order.removeFirst()
        let flowKey = shares[shareKey]!.order.removeFirst()
        let element = shares[shareKey]!.flows[flowKey]!.removeFirst()
        if shares[shareKey]!.flows[flowKey]!.isEmpty {
            shares[shareKey]!.flows[flowKey] = nil
        } else {
            shares[shareKey]!.order.append(flowKey)
        }
        shares[shareKey]!.count -= 1
        if shares[shareKey]!.count == 0 { shares[shareKey] = nil } else { order.append(shareKey) }
        count -= 1
        return element
    }

    /// Takes out the first element that matches (a waiter whose request was cancelled).
    mutating func remove(where matches: (Element) -> Bool) -> Element? {
        for (shareKey, share) in shares {
            for (flowKey, elements) in share.flows {
                guard let index = elements.firstIndex(where: matches) else { continue }
                let element = shares[shareKey]!.flows[flowKey]!.remove(at: index)
                if shares[shareKey]!.flows[flowKey]!.isEmpty {
                    shares[shareKey]!.flows[flowKey] = nil
                    shares[shareKey]!.order.removeAll { $0 == flowKey }
                }
                shares[shareKey]!.count -= 1
                if shares[shareKey]!.count == 0 {
                    shares[shareKey] = nil
                    order.removeAll { $0 == shareKey }
                }
                count -= 1
                return element
            }
        }
        return nil
    }
}

extension FairQueue: Sendable where Element: Sendable {}
extension FairQueue.Share: Sendable where Element: Sendable {}
