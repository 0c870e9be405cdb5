import NIOConcurrencyHelpers
import XCTest

@testable import Storage

final class CoalescerTests: XCTestCase {
    /// Records every batch it is given; each item's output is the item doubled.
    final class Recorder: Sendable {
        let batches = NIOLockedValueBox<[[Int]]>([])
        let delay: Duration
        init(delay: Duration) { self.delay = delay }

        func coalescer(maxBatch: Int) -> Coalescer<String, Int, Int> {
            Coalescer(maxBatch: maxBatch) { items, _ in
                self.batches.withLockedValue { $0.append(items) }
                try? await Task.sleep(for: self.delay)
                return items.map { .success($0 * 2) }
            }
        }
    }

    func testAnIdleLaneRunsACallAloneAndAtOnce() async throws {
        let recorder = Recorder(delay: .zero)
        let coalescer = recorder.coalescer(maxBatch: 8)
        for i in 0..<5 {
            let doubled = try await coalescer.submit(i, lane: "a")
            XCTAssertEqual(doubled, i * 2)
        }
        XCTAssertEqual(recorder.batches.withLockedValue { $0 }, [[0], [1], [2], [3], [4]])
    }

    func testCallsArrivingDuringABatchGoTogetherAndEachGetsItsOwnResult() async throws {
        let recorder = Recorder(delay: .milliseconds(50))
        let coalescer = recorder.coalescer(maxBatch: 16)
        let results = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for i in 0..<40 { group.addTask { (i, try await coalescer.submit(i, lane: "hot")) } }
            var all: [(Int, Int)] = []
            for try await r in group { all.append(r) }
            return all
        }
        XCTAssertEqual(results.count, 40)
        for (i, doubled) in results { XCTAssertEqual(doubled, i * 2, "each caller gets its own item's result") }
        let batches = recorder.batches.withLockedValue { $0 }
        XCTAssertEqual(batches.flatMap { $0 }.sorted(), Array(0..<40), "every item runs exactly once")
        XCTAssertLessThan(batches.count, 40, "concurrent calls shared batches: \(batches)")
        XCTAssertLessThanOrEqual(batches.map(\.count).max() ?? 0, 16, "no batch exceeds maxBatch")
        XCTAssertTrue(coalescer.lanes.withLockedValue { $0.0.isEmpty }, "the lane is idle again")
    }

    func testLanesDoNotWaitForEachOther() async throws {
        let slow = Coalescer<String, Int, Int>(maxBatch: 8) { items, lane in
            if lane == "slow" { try? await Task.sleep(for: .milliseconds(500)) }
            return items.map { .success($0) }
        }
        async let blocked = slow.submit(1, lane: "slow")
        try await Task.sleep(for: .milliseconds(20))
        let started = ContinuousClock.now
        let fast = try await slow.submit(2, lane: "fast")
        XCTAssertEqual(fast, 2)
        XCTAssertLessThan(ContinuousClock.now - started, .milliseconds(300), "another lane's batch in flight does not delay this one")
        let slowResult = try await blocked
        XCTAssertEqual(slowResult, 1)
    }

    /// A batch that hangs (a database call stuck after an outage) holds its lane only until it is stale; later
    /// calls run in a new batch, and the hung batch still delivers its own result when it finally returns.
    func testAHungBatchDoesNotHoldItsLaneForever() async throws {
        let hang = NIOLockedValueBox(true)
        let coalescer = Coalescer<String, Int, Int>(maxBatch: 8, staleAfter: .milliseconds(200)) { items, _ in
            if items.contains(0) {
                while hang.withLockedValue({ $0 }) { try? await Task.sleep(for: .milliseconds(20)) }
            }
            return items.map { .success($0 + 100) }
        }
        async let hung = coalescer.submit(0, lane: "db")
        try await Task.sleep(for: .milliseconds(50))
        async let queued = coalescer.submit(1, lane: "db")   // behind the hung batch, not yet stale
        try await Task.sleep(for: .milliseconds(300))
        let started = ContinuousClock.now
        let fresh = try await coalescer.submit(2, lane: "db")
        XCTAssertEqual(fresh, 102)
        XCTAssertLessThan(ContinuousClock.now - started, .milliseconds(150), "a stale batch does not hold the lane")
        let stranded = try await queued
        XCTAssertEqual(stranded, 101, "the call queued behind the hung batch was taken into a new one")
        hang.withLockedValue { $0 = false }
        let late = try await hung
        XCTAssertEqual(late, 100, "the hung batch still delivers its own result")
        XCTAssertTrue(coalescer.lanes.withLockedValue { $0.0.isEmpty }, "the lane is idle again")
    }

    func testAWrongResultCountFailsEveryCallerInsteadOfMisassigning() async {
        let broken = Coalescer<String, Int, Int>(maxBatch: 8) { _, _ in [] }
        do {
            _ = try await broken.submit(1, lane: "x")
            XCTFail("expected an error")
        } catch {
            XCTAssertTrue(error is CoalescerError)
        }
    }
}
