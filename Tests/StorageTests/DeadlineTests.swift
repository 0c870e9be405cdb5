import KeybrakeCore
import NIOConcurrencyHelpers
import XCTest

@testable import Storage

final class DeadlineTests: XCTestCase {
    func testFastWorkReturnsItsValueAndNeverUndoes() async throws {
        let undone = NIOLockedValueBox(false)
        for i in 0..<200 {
            let value = try await Deadline.run(.seconds(2), { i * 2 }, onLateSuccess: { _ in undone.withLockedValue { $0 = true } })
            XCTAssertEqual(value, i * 2)
        }
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertFalse(undone.withLockedValue { $0 })
        XCTAssertTrue(DeadlineWatchdog.shared.state.withLockedValue { $0.pending.isEmpty }, "finished work leaves no deadline behind")
    }

    func testErrorsReachTheCaller() async {
        struct Boom: Error {}
        do {
            _ = try await Deadline.run(.seconds(2), { () async throws -> Int in throw Boom() })
            XCTFail("expected the work's error")
        } catch {
            XCTAssertTrue(error is Boom, "\(error)")
        }
    }

    /// Work that outlives the deadline: the caller gets `unavailable` at about the deadline (fail closed), and
    /// when the work later succeeds anyway its effect is handed to `onLateSuccess` to be undone.
    func testSlowWorkFailsClosedAtTheDeadlineAndIsUndoneLater() async throws {
        let late = NIOLockedValueBox<Int?>(nil)
        let started = ContinuousClock.now
        do {
            _ = try await Deadline.run(.milliseconds(200), { () async throws -> Int in
                // Not cancellable on purpose: a statement already on the wire keeps running.
                let until = ContinuousClock.now + .milliseconds(700)
                while ContinuousClock.now < until { try? await Task.sleep(for: .milliseconds(20)) }
                return 42
            }, onLateSuccess: { value in late.withLockedValue { $0 = value } })
            XCTFail("expected unavailable")
        } catch let error as KeybrakeError {
            XCTAssertEqual(error.code, KeybrakeError.unavailable.code)
        }
        let elapsed = ContinuousClock.now - started
        XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(200))
        XCTAssertLessThan(elapsed, .milliseconds(600), "answered at the deadline, not when the work finished")
        XCTAssertNil(late.withLockedValue { $0 }, "not undone before the work finishes")
        try await Task.sleep(for: .milliseconds(900))
        XCTAssertEqual(late.withLockedValue { $0 }, 42, "the late success was handed over to be undone")
    }

    /// `leavesWorkRunning` (a settlement: worth finishing after the agent got its answer): the caller is answered at
    /// the deadline, and the work is not told to cancel, so a cancellable wait in it (a pool connection) goes on and
    /// finishes. Mutation: with the work cancelled at the deadline, its sleep threw and it never finished.
    func testWorkLeftRunningAtTheDeadlineFinishes() async throws {
        let finished = NIOLockedValueBox(false)
        let started = ContinuousClock.now
        do {
            try await Deadline.run(.milliseconds(150), hearsCancellation: false, leavesWorkRunning: true) {
                try await Task.sleep(for: .milliseconds(500))  // throws if cancelled
                finished.withLockedValue { $0 = true }
            }
            XCTFail("expected unavailable")
        } catch let error as KeybrakeError {
            XCTAssertEqual(error.code, KeybrakeError.unavailable.code)
        }
        XCTAssertLessThan(ContinuousClock.now - started, .milliseconds(450), "answered at the deadline")
        XCTAssertFalse(finished.withLockedValue { $0 })
        try await Task.sleep(for: .milliseconds(900))
        XCTAssertTrue(finished.withLockedValue { $0 }, "the work went on past the deadline")
    }

    /// The caller's cancellation ends the wait as the deadline does, at once: the work keeps running detached (it is
    /// told to cancel, but a statement on the wire may not listen) and its late success is handed over to be undone.
    /// Mutation: without the cancellation handler, the caller waited for the work to end (and both tests failed).
    func testACancelledCallerIsAnsweredAtOnceAndALateSuccessIsUndone() async throws {
        let late = NIOLockedValueBox<Int?>(nil)
        let caller = Task { () -> (any Error)? in
            do {
                _ = try await Deadline.run(.seconds(2), { () async throws -> Int in
                    let until = ContinuousClock.now + .milliseconds(500)
                    while ContinuousClock.now < until { try? await Task.sleep(for: .milliseconds(20)) }  // deaf to cancellation
                    return 7
                }, onLateSuccess: { value in late.withLockedValue { $0 = value } })
                return nil
            } catch { return error }
        }
        try await Task.sleep(for: .milliseconds(100))
        let cancelled = ContinuousClock.now
        caller.cancel()
        let error = await caller.value
        XCTAssertLessThan(ContinuousClock.now - cancelled, .milliseconds(200), "answered when cancelled, not at the work's end")
        XCTAssertTrue(error is CancellationError, "\(String(describing: error))")
        XCTAssertNil(late.withLockedValue { $0 })
        try await Task.sleep(for: .milliseconds(700))
        XCTAssertEqual(late.withLockedValue { $0 }, 7, "the late success was handed over to be undone")
        XCTAssertTrue(DeadlineWatchdog.shared.state.withLockedValue { $0.pending.isEmpty }, "no deadline left behind")
    }

    /// A caller cancelled before the call never starts the work.
    func testAnAlreadyCancelledCallerNeverStartsTheWork() async throws {
        let started = NIOLockedValueBox(false)
        let caller = Task { () -> (any Error)? in
            while !Task.isCancelled { await Task.yield() }
            do {
                _ = try await Deadline.run(.seconds(2), { started.withLockedValue { $0 = true }; return 1 })
                return nil
            } catch { return error }
        }
        caller.cancel()
        let error = await caller.value
        XCTAssertTrue(error is CancellationError, "\(String(describing: error))")
        try await Task.sleep(for: .milliseconds(50))
        XCTAssertFalse(started.withLockedValue { $0 })
        XCTAssertTrue(DeadlineWatchdog.shared.state.withLockedValue { $0.pending.isEmpty }, "no deadline left behind")
    }
}
