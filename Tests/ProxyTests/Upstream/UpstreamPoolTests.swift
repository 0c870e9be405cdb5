import AsyncHTTPClient
import Foundation
import NIOConcurrencyHelpers
@testable import Proxy
import XCTest

/// The per-vendor budget and its shards, without a network: every client is made, none is used.
final class UpstreamPoolTests: XCTestCase {
    func makePool(limit: Int, perShard: Int, busyWait: Duration, maxWaiting: Int? = nil) -> UpstreamPool {
        UpstreamPool(limit: limit, perShard: perShard, busyWait: busyWait, maxWaiting: maxWaiting ?? limit) {
            HTTPClient(eventLoopGroupProvider: .singleton)
        }
    }

    func testRequestsPackOntoTheFirstShardWithRoomAndANewShardOpensOnlyWhenAllAreFull() async throws {
        let pool = makePool(limit: 10, perShard: 4, busyWait: .zero)
        var leases: [UpstreamPool.Lease] = []
        for _ in 0..<4 { leases.append(try await XCTUnwrapAsync(await pool.acquire())) }
        XCTAssertEqual(Set(leases.map(\.shard)), [0])
        XCTAssertEqual(pool.snapshot.shards, 1, "four fit one connection's streams")
        leases.append(try await XCTUnwrapAsync(await pool.acquire()))
        XCTAssertEqual(leases.last?.shard, 1)
        XCTAssertEqual(pool.snapshot.shards, 2)
        pool.release(leases[0])
        let again = try await XCTUnwrapAsync(await pool.acquire())
        XCTAssertEqual(again.shard, 0, "a freed stream on the first shard is used before the second's")
        for l in leases.dropFirst() + [again] { pool.release(l) }
        XCTAssertEqual(pool.snapshot.inFlight, 0)
        try await pool.shutdown()
    }

    func testTheBudgetIsACeilingAndTheWaitIsBounded() async throws {
        let pool = makePool(limit: 3, perShard: 2, busyWait: .milliseconds(20))
        var leases: [UpstreamPool.Lease] = []
        for _ in 0..<3 { leases.append(try await XCTUnwrapAsync(await pool.acquire())) }
        let refused = await pool.acquire()
        XCTAssertNil(refused, "the fourth waits its bounded time, then is refused")
        XCTAssertEqual(pool.snapshot.inFlight, 3)
        XCTAssertEqual(pool.snapshot.waiting, 0, "nothing is left queued")
        XCTAssertEqual(pool.snapshot.shards, 2)
        for l in leases { pool.release(l) }
        try await pool.shutdown()
    }

    func testAReleasedSlotGoesToTheWaiterInsteadOfBackToTheBudget() async throws {
        let pool = makePool(limit: 1, perShard: 1, busyWait: .seconds(600))
        let first = try await XCTUnwrapAsync(await pool.acquire())
        let waiter = Task { await pool.acquire() }
        while pool.snapshot.waiting == 0 { try await Task.sleep(for: .milliseconds(1)) }
        pool.release(first)
        let handed = await waiter.value
        XCTAssertNotNil(handed, "the waiter gets the slot")
        XCTAssertEqual(pool.snapshot.inFlight, 1)
        XCTAssertEqual(pool.snapshot.waiting, 0)
        pool.release(handed!)
        XCTAssertEqual(pool.snapshot.inFlight, 0)
        try await pool.shutdown()
    }

    func testTheQueueIsBoundedInLengthAndACancelledWaiterLeavesIt() async throws {
        let pool = makePool(limit: 1, perShard: 1, busyWait: .seconds(600), maxWaiting: 1)
        let first = try await XCTUnwrapAsync(await pool.acquire())
        let waiter = Task { await pool.acquire() }
        while pool.snapshot.waiting == 0 { try await Task.sleep(for: .milliseconds(1)) }
        let overflow = await pool.acquire()
        XCTAssertNil(overflow, "a full queue refuses at once")
        waiter.cancel()
        let cancelled = await waiter.value
        XCTAssertNil(cancelled)
        XCTAssertEqual(pool.snapshot.waiting, 0)
        pool.release(first)
        XCTAssertEqual(pool.snapshot.inFlight, 0)
        try await pool.shutdown()
    }
}

func XCTUnwrapAsync<T>(_ value: T?, file: StaticString = #filePath, line: UInt = #line) async throws -> T {
    try XCTUnwrap(value, file: file, line: line)
}
