import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOConcurrencyHelpers
import PostgresNIO
import XCTest

/// The money promise as properties, not examples: a seeded generator drives sequences of requests, identical retries
/// with the same Idempotency-Key, retries with a new SDK-random key or none, identical parallel requests, several vault
/// keys of one tenant (a parent key and two child keys among them), two replicas, and vendor faults on first attempts and on retries (answer lost after acting,
/// every kind of 4xx, 5xx, late answers). After every sequence:
/// - money moved (as the vendor fake counts it) ≤ every key's cap, a parent's counting its children's;
/// - no operation executed twice at the vendor;
/// - the ledger (settled + held + unknown) ≥ money moved, per key, and equal once nothing is unknown;
/// - every request has exactly one audit row.
///
/// `make test` runs it for ~45 s with a fresh seed (printed); replay one with `KEYBRAKE_INVARIANT_SEED=<seed>`, run
/// longer with `KEYBRAKE_INVARIANT_SECONDS` (`make soak`).
final class ProxyInvariantTests: XCTestCase, @unchecked Sendable {
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    struct Key: Sendable {
        let name: String
        let id: String
        let token: String
        let vendor: String
        let capMicros: Int64
        /// Names of the keys whose spend counts against this one: itself, and its children for a parent.
        var subtree: [String] = []
        var counts: [String] { subtree.isEmpty ? [name] : subtree }
    }

    /// One agent-level operation: what it sends, again and again.
    struct Operation: Sendable {
        let name: String
        let vendor: String
        let amountMinor: Int
        var lastIdempotencyKey: String?
    }

    func testMoneyInvariantsHoldUnderRetriesFaultsAndTwoReplicas() async throws {
        let env = ProcessInfo.processInfo.environment
        let seed = env["KEYBRAKE_INVARIANT_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 1...UInt64(Int64.max))
        let seconds = env["KEYBRAKE_INVARIANT_SECONDS"].flatMap(Double.init) ?? 45
        print("ProxyInvariantTests: seed \(seed) (replay with KEYBRAKE_INVARIANT_SEED=\(seed)), \(seconds) s")
        let h = try await ProxyHarness.start()
        defer { h.fake.stop() }
        h.fake.twilioPrice.withLockedValue { $0 = "-0.00830" }
        let deadline = ContinuousClock.now + .seconds(seconds)
        let stats = NIOLockedValueBox((sequences: 0, requests: 0))
        try await h.run { first in
            try await h.run { second in
                var sequence = 0
                while ContinuousClock.now < deadline, sequence < 10_000 {
                    let sequenceSeed = seed &+ UInt64(sequence)
                    let made = try await self.runSequence(seed: sequenceSeed, index: sequence, replicas: [first, second], fake: h.fake)
                    stats.withLockedValue { $0.sequences += 1; $0.requests += made }
                    sequence += 1
                    if self.testRun?.failureCount ?? 0 > 0 {
                        XCTFail("invariant broken in sequence \(sequence - 1): replay with KEYBRAKE_INVARIANT_SEED=\(seed) (sequence seed \(sequenceSeed))")
                        return
                    }
                }
            }
        }
        let s = stats.withLockedValue { $0 }
        print("ProxyInvariantTests: \(s.sequences) sequences, \(s.requests) requests, seed \(seed)")
        XCTAssertGreaterThan(s.sequences, 0)
    }

    /// One sequence on a fresh tenant; returns the number of proxied requests it made.
    func runSequence(seed: UInt64, index: Int, replicas: [any TestClientProtocol], fake: FakeVendors) async throws -> Int {
        var rng = SplitMix64(state: seed)
        let admin = replicas[0]
        let tenant = try await admin.tenantWithCredentials()
        var keys: [Key] = []
        for (i, extra) in [["auto_idempotency": true], ["auto_idempotency": true], ["auto_idempotency": false]].enumerated() {
            let cap = Int.random(in: 20...60, using: &rng)
            var policy: [String: Any] = ["daily_usd_cap": cap, "label": "k\(i)"]
            policy.merge(extra) { $1 }
            let (id, token) = try await admin.vaultKey(tenant, policy)
            keys.append(Key(name: "s\(index)k\(i)", id: id, token: token, vendor: "stripe", capMicros: Int64(cap) * 1_000_000))
        }
        // A parent key and two children minted with its vault key, each with a lifetime cap: the children's money is
        // reserved against the parent too, so the parent's cap holds over both.
        let parentCap = Int.random(in: 20...60, using: &rng)
        let parent = try await admin.vaultKey(tenant, ["daily_usd_cap": parentCap, "label": "parent"])
        var children: [Key] = []
        for c in 0..<2 {
            let cap = Int.random(in: 10...40, using: &rng)
            let minted = try await replicas[c].call(.post, "/v1/child-keys", token: parent.token, json: ["label": "child \(c)", "total_usd_cap": cap])
            XCTAssertEqual(minted.status, .created, minted.text)
            children.append(Key(name: "s\(index)c\(c)", id: (minted.json["key"] as? [String: Any])?["id"] as? String ?? "",
                                token: minted.json["token"] as? String ?? "", vendor: "stripe", capMicros: Int64(cap) * 1_000_000))
        }
        var parentKey = Key(name: "s\(index)p", id: parent.id, token: parent.token, vendor: "stripe", capMicros: Int64(parentCap) * 1_000_000)
        parentKey.subtree = [parentKey.name] + children.map(\.name)
        keys.append(parentKey)
        keys += children
        let sms = try await admin.vaultKey(tenant, ["vendor": "twilio", "allowed_endpoints": ["POST /2010-04-01/Accounts/*/Messages.json"],
                                                    "daily_usd_cap": 0.05, "label": "sms"])
        keys.append(Key(name: "s\(index)sms", id: sms.id, token: sms.token, vendor: "twilio", capMicros: 50_000))

        var operations: [Operation] = []
        var requestsPerKey: [String: Int] = [:]
        let steps = Int.random(in: 12...24, using: &rng)
        for _ in 0..<steps {
            // An operation: mostly a retry of an earlier one, sometimes a new one.
            if operations.isEmpty || Int.random(in: 0..<10, using: &rng) < 3 {
                let twilio = Int.random(in: 0..<6, using: &rng) == 0
                operations.append(Operation(name: "s\(index)op\(operations.count)", vendor: twilio ? "twilio" : "stripe",
                                            amountMinor: Int.random(in: 3...25, using: &rng) * 100))
            }
            let opIndex = Int.random(in: 0..<operations.count, using: &rng)
            let op = operations[opIndex]
            let candidates = keys.filter { $0.vendor == op.vendor }
            // Mostly the key that started it; sometimes another key of the tenant.
            let key = Int.random(in: 0..<5, using: &rng) == 0 ? candidates[Int.random(in: 0..<candidates.count, using: &rng)] : candidates[opIndex % candidates.count]
            var idempotencyKey: String?
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: idempotencyKey = op.lastIdempotencyKey ?? "agent-\(op.name)"        // the agent's own retry
            case 1: idempotencyKey = "sdk-\(UInt64.random(in: 0...UInt64.max, using: &rng))"  // an SDK-random key
            default: idempotencyKey = nil                                               // none
            }
            operations[opIndex].lastIdempotencyKey = idempotencyKey ?? operations[opIndex].lastIdempotencyKey
            let faults: [FakeVendors.Fault] = (0..<3).map { _ in
                switch Int.random(in: 0..<20, using: &rng) {
                case 0, 1: return .actThenStatus([500, 502][Int.random(in: 0..<2, using: &rng)])
                case 2: return .delay(.milliseconds(700))    // acts, answers after the proxy's 500 ms timeout
                case 3, 4, 5: return .status([400, 401, 402, 404, 409, 429, 500, 503][Int.random(in: 0..<8, using: &rng)])
                default: return .none
                }
            }
            fake.faultQueue.withLockedValue { $0 = faults }
            let parallel = Int.random(in: 0..<8, using: &rng) == 0 ? Int.random(in: 2...3, using: &rng) : 1
            let replicaChoices = (0..<parallel).map { _ in Int.random(in: 0..<2, using: &rng) }
            let sentKey = idempotencyKey
            try await withThrowingTaskGroup(of: Void.self) { group in
                for r in replicaChoices {
                    let client = replicas[r]
                    group.addTask {
                        var headers = ["X-Test-Vault": key.name]
                        if let sentKey { headers["Idempotency-Key"] = sentKey }
                        let response: HTTPResult
                        if op.vendor == "twilio" {
                            response = try await client.proxy(.post, "/twilio/2010-04-01/Accounts/AC1/Messages.json", key: key.token,
                                                              form: [("To", "+15551234567"), ("From", "+15550000000"), ("Body", op.name)],
                                                              headers: headers, basicAuth: true)
                        } else {
                            response = try await client.proxy(.post, "/stripe/v1/charges", key: key.token,
                                                              form: [("amount", String(op.amountMinor)), ("currency", "usd"), ("metadata[op]", op.name)],
                                                              headers: headers)
                        }
                        XCTAssertNotEqual(response.headers[HTTPField.Name("Keybrake-Error-Code")!], "internal_error", response.text)
                    }
                }
                try await group.waitForAll()
            }
            requestsPerKey[key.id, default: 0] += parallel
        }
        fake.faultQueue.withLockedValue { $0 = [] }
        try await checkInvariants(keys: keys, operations: operations, requestsPerKey: requestsPerKey, fake: fake)
        return requestsPerKey.values.reduce(0, +)
    }

    func checkInvariants(keys: [Key], operations: [Operation], requestsPerKey: [String: Int], fake: FakeVendors) async throws {
        let names = Set(operations.map(\.name))
        let moved = fake.moved.filter { $0.operation.map(names.contains) ?? false }
        // No operation executed twice.
        var executions: [String: Int] = [:]
        for m in moved { executions[m.operation ?? "", default: 0] += 1 }
        for (op, count) in executions where count > 1 { XCTFail("\(op) executed \(count) times at the vendor") }

        for key in keys {
            let movedMicros = moved.filter { $0.vault.map(key.counts.contains) ?? false }
                .map { key.vendor == "stripe" ? Int64($0.amount) * 10_000 : Int64($0.amount) }.reduce(0, +)
            XCTAssertLessThanOrEqual(movedMicros, key.capMicros, "\(key.name): money moved above the cap")
            let ledger = try await Ledger.day(key.id)
            let counted = ledger.settled + ledger.reserved + ledger.unknown
            XCTAssertEqual(ledger.reserved, 0, "\(key.name): a reservation held after every request answered")
            XCTAssertGreaterThanOrEqual(counted, movedMicros, "\(key.name): the ledger counts less than moved")
            if ledger.unknown == 0 {
                XCTAssertEqual(counted, movedMicros, "\(key.name): nothing is unknown, so the ledger must equal what moved")
            }
            let rows = try await TestDatabase.withClient { db in
                var n = 0
                for try await _ in try await db.query("SELECT id FROM audit_events WHERE key_id = \(key.id) AND decision <> 'resolved'") { n += 1 }
                return n
            }
            XCTAssertEqual(rows, requestsPerKey[key.id] ?? 0, "\(key.name): one audit row per request")
        }
    }
}
