@testable import Storage
import Synchronization
import XCTest

/// Fair admission (DESIGN §16): who gets a free seat, and the gate's waits and refusals.
final class AdmissionTests: XCTestCase {
    typealias State = AdmissionState<String>

    func state(seats: Int = 4, perTenant: Int = 2, queue: Int = 8) -> State {
        State(.init(seats: seats, seatsPerTenant: perTenant, queuePerTenant: queue))
    }

    func testATenantTakesAtMostItsShareEvenWithSeatsFree() {
        var s = state()
        XCTAssertTrue(s.tryAdmit("A"))
        XCTAssertTrue(s.tryAdmit("A"))
        XCTAssertFalse(s.tryAdmit("A"), "A holds its share of 2")
        XCTAssertEqual(s.free, 2)
        XCTAssertTrue(s.tryAdmit("B"), "B has its own share")
    }

    func testAQueuedTenantsNewcomerWaitsBehindItsOwnQueue() {
        var s = state(seats: 2, perTenant: 2)
        XCTAssertTrue(s.tryAdmit("A"))
        XCTAssertTrue(s.tryAdmit("A"))
        XCTAssertEqual(s.enqueue("A", id: 1, "a1"), .queued)
        XCTAssertEqual(s.release("A"), ["a1"], "the seat goes to A's waiter")
        XCTAssertEqual(s.held(by: "A"), 2)
        XCTAssertFalse(s.tryAdmit("A"))
    }

    func testAFreedSeatGoesToTheTenantHoldingFewestBeforeTheLongestWaiting() {
        // 3 seats, all taken: A holds 2, B holds 1. A's waiter came first, B's second.
        var s = state(seats: 3, perTenant: 3)
        for t in ["A", "A", "B"] { XCTAssertTrue(s.tryAdmit(t)) }
        XCTAssertEqual(s.enqueue("A", id: 1, "a1"), .queued)
        XCTAssertEqual(s.enqueue("B", id: 2, "b1"), .queued)
        // B gives its seat back: B holds 0, A 2 — B's waiter goes first although A's waited longer.
        XCTAssertEqual(s.release("B"), ["b1"])
        XCTAssertEqual(s.release("B"), ["a1"], "then the only one left")
    }

    func testEqualHoldersAreServedLongestWaitingFirst() {
        var s = state(seats: 2, perTenant: 2)
        for t in ["A", "B"] { XCTAssertTrue(s.tryAdmit(t)) }
        XCTAssertEqual(s.enqueue("B", id: 1, "b1"), .queued)
        XCTAssertEqual(s.enqueue("C", id: 2, "c1"), .queued)
        XCTAssertEqual(s.enqueue("A", id: 3, "a1"), .queued)
        // A gives one back: A holds 0, B 1, C 0 → A and C tie on 0 held; C's head waited longer than A's.
        XCTAssertEqual(s.release("A"), ["c1"])
        // B gives one back: A 0, B 0, C 1 → A and B tie; B's head (id 1) waited longest.
        XCTAssertEqual(s.release("B"), ["b1"])
        XCTAssertEqual(s.release("C"), ["a1"])
    }

    func testAFreedSeatSkipsATenantAtItsShare() {
        var s = state(seats: 3, perTenant: 2)
        XCTAssertTrue(s.tryAdmit("A"))
        XCTAssertTrue(s.tryAdmit("A"))
        XCTAssertTrue(s.tryAdmit("B"))
        XCTAssertEqual(s.enqueue("A", id: 1, "a1"), .queued)
        XCTAssertEqual(s.enqueue("B", id: 2, "b1"), .queued)
        // B's seat comes free: A waited longer but holds its share; B (0 held) gets it.
        XCTAssertEqual(s.release("B"), ["b1"])
        XCTAssertEqual(s.held(by: "A"), 2)
    }

    func testTheQueueIsBoundedPerTenant() {
        var s = state(seats: 1, perTenant: 1, queue: 2)
        XCTAssertTrue(s.tryAdmit("A"))
        XCTAssertEqual(s.enqueue("A", id: 1, "a1"), .queued)
        XCTAssertEqual(s.enqueue("A", id: 2, "a2"), .queued)
        XCTAssertEqual(s.enqueue("A", id: 3, "a3"), .full)
        XCTAssertEqual(s.enqueue("B", id: 4, "b1"), .queued, "another tenant's queue is its own")
    }

    func testARemovedWaiterIsNeverAdmittedAndTheEntriesGo() {
        var s = state(seats: 1, perTenant: 1)
        XCTAssertTrue(s.tryAdmit("A"))
        XCTAssertEqual(s.enqueue("B", id: 1, "b1"), .queued)
        XCTAssertEqual(s.remove("B", id: 1), "b1")
        XCTAssertNil(s.remove("B", id: 1))
        XCTAssertEqual(s.release("A"), [])
        XCTAssertTrue(s.tenants.isEmpty, "no entry outlives its seats and waiters")
        XCTAssertEqual(s.free, 1)
    }

    // MARK: - The gate

    func testTheGateRefusesAfterTheWaitAndAdmitsAWaiterWhenASeatIsGivenBack() async throws {
        var settings = TenantGate.Settings()
        settings.seats = 1
        settings.seatsPerTenant = 1
        settings.maxWait = .milliseconds(200)
        let gate = TenantGate(settings: settings)
        XCTAssertTrue(gate.tryAdmit("A"))
        XCTAssertFalse(gate.tryAdmit("B"))
        let started = ContinuousClock.now
        let refused = await gate.wait("B")
        XCTAssertFalse(refused, "no seat came free within the wait")
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(200))
        XCTAssertEqual(gate.load("B").queued, 0)

        let admitted = Task { await gate.wait("B") }
        while gate.load("B").queued == 0 { try await Task.sleep(for: .milliseconds(5)) }
        gate.release("A")
        let result = await admitted.value
        XCTAssertTrue(result)
        XCTAssertEqual(gate.load("B").held, 1)
        gate.release("B")
        XCTAssertEqual(gate.load("B").held, 0)
    }

    func testACancelledWaiterLeavesTheQueue() async throws {
        var settings = TenantGate.Settings()
        settings.seats = 1
        settings.seatsPerTenant = 1
        let gate = TenantGate(settings: settings)
        XCTAssertTrue(gate.tryAdmit("A"))
        let waiting = Task { await gate.wait("B") }
        while gate.load("B").queued == 0 { try await Task.sleep(for: .milliseconds(5)) }
        waiting.cancel()
        let result = await waiting.value
        XCTAssertFalse(result)
        XCTAssertEqual(gate.load("B").queued, 0)
        gate.release("A")
        XCTAssertTrue(gate.tryAdmit("B"), "the seat was not handed to the cancelled waiter")
    }
}

extension AdmissionState.Enqueued: Equatable {}
