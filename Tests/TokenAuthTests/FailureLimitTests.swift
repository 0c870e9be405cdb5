import KeybrakeCore
@testable import TokenAuth
import XCTest

/// DESIGN §4 "Knowing a key id is not power over the key": failures are counted per (id, client) and per client.
final class FailureLimitTests: XCTestCase {
    let fast = Argon2id(iterations: 1, memoryKiB: 1024, parallelism: 1)

    func wrong(_ token: String, _ i: Int = 0) throws -> ParsedToken {
        var chars = Array(token)
        let position = chars.count - 1 - (i % 20)
        chars[position] = chars[position] == "a" ? "b" : "a"
        return try XCTUnwrap(TokenFormat.parse(String(chars), as: .vault))
    }

    func testAStrangersFailuresCutOffHisAddressNotTheHolders() async throws {
        var config = TokenVerifier.Configuration()
        config.maxFailures = 3
        config.cacheTTL = .zero   // every verification hashes, as on a cache miss or another replica
        let verifier = TokenVerifier(configuration: config, argon2: fast)
        let (token, _) = TokenFormat.generate(.vault)
        let right = try XCTUnwrap(TokenFormat.parse(token, as: .vault))
        let hash = try fast.hash(token)
        var refused = 0
        for i in 0..<50 {
            let attempt = try wrong(token, i)
            do {
                let ok = try await verifier.verify(attempt, storedHash: hash, tenant: "ten_a", client: "198.51.100.7")
                XCTAssertFalse(ok)
            } catch {
                XCTAssertEqual(error.code, "rate_limited")
                refused += 1
            }
            // The holder, from another address, between the stranger's attempts.
            if i % 10 == 0 {
                let holder = try await verifier.verify(right, storedHash: hash, tenant: "ten_a", client: "203.0.113.5")
                XCTAssertTrue(holder, "the holder was refused after \(i) of the stranger's attempts")
            }
        }
        XCTAssertEqual(refused, 47, "cut off after maxFailures")
        XCTAssertEqual(verifier.hashesPerformed, 3 + 5, "the stranger's three and the holder's five; the rest refused before hashing")
        // The stranger's address stays cut off for that id even with the right secret.
        do {
            _ = try await verifier.verify(right, storedHash: hash, tenant: "ten_a", client: "198.51.100.7")
            XCTFail("the stranger's address should be refused")
        } catch {
            XCTAssertEqual(error.status, 429)
            XCTAssertNotNil(error.retryAfterSeconds)
        }
    }

    func testOneAddressIsCutOffAcrossIdsAfterMaxClientFailures() async throws {
        var config = TokenVerifier.Configuration()
        config.maxFailures = 100
        config.maxClientFailures = 5
        let verifier = TokenVerifier(configuration: config, argon2: fast)
        var tokens: [(String, String)] = []
        for _ in 0..<8 {
            let (token, _) = TokenFormat.generate(.vault)
            tokens.append((token, try fast.hash(token)))
        }
        var outcomes: [String] = []
        for (token, hash) in tokens {
            let attempt = try wrong(token)
            do {
                _ = try await verifier.verify(attempt, storedHash: hash, tenant: "ten_a", client: "198.51.100.7")
                outcomes.append("401")
            } catch {
                outcomes.append(error.code)
            }
        }
        XCTAssertEqual(outcomes, ["401", "401", "401", "401", "401", "rate_limited", "rate_limited", "rate_limited"])
        XCTAssertEqual(verifier.hashesPerformed, 5)
        // Another address is not affected.
        let (token, hash) = tokens[7]
        let other = try await verifier.verify(try XCTUnwrap(TokenFormat.parse(token, as: .vault)), storedHash: hash, tenant: "ten_a", client: "203.0.113.5")
        XCTAssertTrue(other)
    }

    func testASuccessGivesItsAttemptBackToTheClient() async throws {
        var config = TokenVerifier.Configuration()
        config.maxClientFailures = 3
        config.cacheTTL = .zero
        let verifier = TokenVerifier(configuration: config, argon2: fast)
        let (token, _) = TokenFormat.generate(.vault)
        let right = try XCTUnwrap(TokenFormat.parse(token, as: .vault))
        let hash = try fast.hash(token)
        // Ten verified requests from one address do not use up its failure budget.
        for _ in 0..<10 {
            let ok = try await verifier.verify(right, storedHash: hash, tenant: "ten_a", client: "203.0.113.5")
            XCTAssertTrue(ok)
        }
    }

    func testTheIdsTurnGoesRoundRobinByClient() {
        var queue = FairQueue<String>()
        for i in 0..<5 { queue.append("stranger-\(i)", share: "198.51.100.7", flow: "198.51.100.7") }
        queue.append("holder", share: "203.0.113.5", flow: "203.0.113.5")
        XCTAssertEqual(queue.popNext(), "stranger-0")
        XCTAssertEqual(queue.popNext(), "holder", "the holder waits behind one of the stranger's attempts, not all five")
        XCTAssertEqual(queue.popNext(), "stranger-1")
        XCTAssertEqual(queue.count, 3)
    }
}
