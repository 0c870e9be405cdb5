import Foundation
import KeybrakeCore
import XCTest

@testable import Keys

/// Key rows in memory (DESIGN §4 "never stale"): served only while listening under a live lease, forgotten with
/// their descendants when a change names them, and never refilled by a read that an invalidation overtook.
final class KeyDirectoryTests: XCTestCase {
    func key(_ id: String, ancestors: [String] = []) -> KeyDirectory.Row {
        let policy = Policy(vendor: .stripe, label: id, allowedEndpoints: ["POST /v1/charges"])
        let date = Date(timeIntervalSince1970: 1_796_000_000)
        return (VaultKey(id: id, tenantId: "ten_1", status: .active, policy: policy, createdAt: date, updatedAt: date, revokedAt: nil,
                         ancestorIds: ancestors), "$argon2id$hash")
    }

    func listening(_ directory: KeyDirectory = KeyDirectory()) -> KeyDirectory {
        directory.resynchronised(leaseUntil: .now + .seconds(60))
        return directory
    }

    /// Reads a key the way the authenticator does: from memory, or (miss) "from Postgres" and stored.
    func readThrough(_ d: KeyDirectory, _ row: KeyDirectory.Row) -> Bool {
        let (cached, epoch) = d.lookup(row.0.id)
        if cached != nil { return true }
        if let epoch { d.store(row, epoch: epoch) }
        return false
    }

    func testNothingIsServedBeforeTheListenerHasSynchronised() {
        let d = KeyDirectory()
        XCTAssertFalse(d.isServing)
        let (row, epoch) = d.lookup("key_a")
        XCTAssertNil(row)
        XCTAssertNil(epoch, "no epoch: a read must not even be stored")
    }

    func testARowReadOnceIsServedFromMemory() {
        let d = listening()
        XCTAssertFalse(readThrough(d, key("key_a")), "first read goes to Postgres")
        XCTAssertTrue(readThrough(d, key("key_a")), "second is served from memory")
    }

    func testAReadOvertakenByAnInvalidationIsNotStored() throws {
        let d = listening()
        // A request reads key_a from Postgres (the old row)...
        let (_, epoch) = d.lookup("key_a")
        // ...while a revocation of key_a is applied on this replica...
        d.invalidate(["key_a"])
        // ...so the old row it read must not become the row served from memory.
        d.store(key("key_a"), epoch: try XCTUnwrap(epoch))
        XCTAssertNil(d.lookup("key_a").row)
    }

    func testAChangeForgetsTheKeyAndEveryKeyBelowItButNotItsParent() {
        let d = listening()
        for row in [key("key_root"), key("key_mid", ancestors: ["key_root"]), key("key_leaf", ancestors: ["key_root", "key_mid"]),
                    key("key_other")] {
            _ = readThrough(d, row)
        }
        d.invalidate(["key_mid"])
        XCTAssertNotNil(d.lookup("key_root").row)
        XCTAssertNil(d.lookup("key_mid").row)
        XCTAssertNil(d.lookup("key_leaf").row, "a child's row carries its ancestors: it goes with them")
        XCTAssertNotNil(d.lookup("key_other").row)
    }

    func testMemoryIsNotServedOnceTheLeaseHasRunOutOrTheListenerIsGone() throws {
        let d = listening()
        _ = readThrough(d, key("key_a"))
        d.renewed(leaseUntil: .now - .milliseconds(1))
        XCTAssertFalse(d.isServing)
        XCTAssertNil(d.lookup("key_a").row, "a lease that ran out is as good as no lease")
        d.renewed(leaseUntil: .now + .seconds(60))
        XCTAssertNotNil(d.lookup("key_a").row)
        d.stopServing()
        XCTAssertNil(d.lookup("key_a").row)
        d.resynchronised(leaseUntil: .now + .seconds(60))
        XCTAssertNil(d.lookup("key_a").row, "after a reconnection memory starts empty: changes may have been missed")
    }

    func testMemoryIsBounded() {
        let d = listening(KeyDirectory(maxEntries: 3))
        for i in 0..<3 { _ = readThrough(d, key("key_\(i)")) }
        _ = readThrough(d, key("key_3"))
        XCTAssertNotNil(d.lookup("key_3").row)
        XCTAssertNil(d.lookup("key_0").row, "past the bound, memory starts again")
    }
}
