import KeybrakeCore
import NIOConcurrencyHelpers
@testable import TokenAuth
import XCTest

/// DESIGN §4 "Hashing is shared fairly between tenants".
final class FairHashingTests: XCTestCase {
    func testFairQueueServesSharesThenFlowsRoundRobin() {
        var queue = FairQueue<String>()
        for i in 0..<3 { queue.append("a\(i)", share: "A", flow: "x") }
        for i in 0..<2 { queue.append("a-y\(i)", share: "A", flow: "y") }
        queue.append("b0", share: "B", flow: "z")
        var order: [String] = []
        while let next = queue.popNext() { order.append(next) }
        XCTAssertEqual(order, ["a0", "b0", "a-y0", "a1", "a-y1", "a2"])
        XCTAssertTrue(queue.isEmpty)
    }

    func testFairQueueRemovesAWaiterAnywhere() {
        var queue = FairQueue<Int>()
        queue.append(1, share: "A", flow: "x")
        queue.append(2, share: "B", flow: "y")
        queue.append(3, share: "A", flow: "x")
        XCTAssertEqual(queue.remove { $0 == 2 }, 2)
        XCTAssertNil(queue.remove { $0 == 2 })
        XCTAssertEqual(queue.popNext(), 1)
        XCTAssertEqual(queue.popNext(), 3)
        XCTAssertNil(queue.popNext())
    }

    /// Records the order in which waiters got the one core.
    final class Order: Sendable {
        let names = NIOLockedValueBox<[String]>([])
        func append(_ name: String) { names.withLockedValue { $0.append(name) } }
        var value: [String] { names.withLockedValue { $0 } }
    }

    /// Until at least `n` hashes wait for a core.
    func waitUntil(_ scheduler: HashScheduler, waiting n: Int) async throws {
        for _ in 0..<1000 where scheduler.waiting < n { try await Task.sleep(for: .milliseconds(2)) }
        XCTAssertGreaterThanOrEqual(scheduler.waiting, n)
    }

    func testABusyTenantWaitsBehindItsOwnWorkAndVerificationsGoFirst() async throws {
        let scheduler = HashScheduler(permits: 1)
        let order = Order()
        try await scheduler.acquire(.store, tenant: "blocker", client: "blocker")
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Tenant A queues twenty key creations, then tenant B one, then tenant C a verification.
            for i in 0..<20 {
                group.addTask { try await scheduler.withPermit(.store, tenant: "A", client: "A") { order.append("A\(i)") } }
            }
            try await waitUntil(scheduler, waiting: 20)
            group.addTask { try await scheduler.withPermit(.store, tenant: "B", client: "B") { order.append("B") } }
            try await waitUntil(scheduler, waiting: 21)
            group.addTask { try await scheduler.withPermit(.verify, tenant: "C", client: "203.0.113.5") { order.append("C-verify") } }
            try await waitUntil(scheduler, waiting: 22)
            scheduler.release()
            try await group.waitForAll()
        }
        let served = order.value
        XCTAssertEqual(served.first, "C-verify", "a presented token is verified before any hash for storage: \(served)")
        XCTAssertEqual(served.firstIndex(of: "B"), 2, "B waits behind one of A's twenty, not all of them: \(served)")
        XCTAssertEqual(served.count, 22)
    }

    func testACancelledWaiterLeavesTheLineAndNeverRuns() async throws {
        let scheduler = HashScheduler(permits: 1)
        try await scheduler.acquire(.verify, tenant: "blocker", client: "blocker")
        let ran = NIOLockedValueBox(false)
        let waiter = Task {
            try await scheduler.withPermit(.verify, tenant: "A", client: "x") { ran.withLockedValue { $0 = true } }
        }
        try await waitUntil(scheduler, waiting: 1)
        waiter.cancel()
        do {
            try await waiter.value
            XCTFail("a cancelled waiter should throw")
        } catch is CancellationError {}
        XCTAssertEqual(scheduler.waiting, 0, "the cancelled waiter left the line")
        scheduler.release()
        // The permit came back: the next one gets it at once.
        try await scheduler.withPermit(.store, tenant: "B", client: "B") {}
        XCTAssertFalse(ran.withLockedValue { $0 })
    }

    /// With argon2 itself: tenant A's 200 queued key hashes do not stand between tenant B's first verification and
    /// a core (with one first-come line, B verified after all of A's).
    func testAnotherTenantsVerificationOvertakesAQueueOfKeyCreations() async throws {
        let fast = Argon2id(iterations: 1, memoryKiB: 4096, parallelism: 1)
        var config = TokenVerifier.Configuration()
        config.maxConcurrentHashes = 1
        let verifier = TokenVerifier(configuration: config, argon2: fast)
        let (token, _) = TokenFormat.generate(.vault)
        let parsed = try XCTUnwrap(TokenFormat.parse(token, as: .vault))
        let hash = try fast.hash(token)
        let created = NIOLockedValueBox(0)
        let createdBeforeB = try await withThrowingTaskGroup(of: Int?.self) { group in
            for _ in 0..<200 {
                group.addTask {
                    _ = try await verifier.hashForStorage(TokenFormat.generate(.vault).0, tenant: "ten_busy")
                    created.withLockedValue { $0 += 1 }
                    return nil
                }
            }
            try await waitUntil(verifier.hashing, waiting: 150)
            group.addTask {
                let ok = try await verifier.verify(parsed, storedHash: hash, tenant: "ten_quiet", client: "203.0.113.5")
                XCTAssertTrue(ok)
                return created.withLockedValue { $0 }
            }
            var result = 0
            for try await value in group { if let value { result = value } }
            return result
        }
        XCTAssertLessThan(createdBeforeB, 60, "B's verification waited behind the busy tenant's queue (\(createdBeforeB) hashes)")
    }
}
