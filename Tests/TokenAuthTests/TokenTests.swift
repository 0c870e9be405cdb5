import KeybrakeCore
@testable import TokenAuth
import XCTest

final class TokenFormatTests: XCTestCase {
    func testGeneratedTokensParseAndAreUnique() {
        let (token, id) = TokenFormat.generate(.vault)
        XCTAssertTrue(token.hasPrefix("kb_vault_\(id)_"))
        XCTAssertEqual(token.count, "kb_vault_".count + 16 + 1 + 43)
        let parsed = TokenFormat.parse(token, as: .vault)
        XCTAssertEqual(parsed?.publicId, id)
        XCTAssertNil(TokenFormat.parse(token, as: .admin), "kinds are not interchangeable")
        XCTAssertNotEqual(TokenFormat.generate(.vault).token, token)
    }

    func testMalformedTokensAreRejected() {
        let (token, _) = TokenFormat.generate(.admin)
        for bad in ["", "kb_admin_", "kb_admin_short_secret", String(token.dropLast()), token + "x",
                    token.replacingOccurrences(of: "kb_admin_", with: "kb_admin_!"), "sk_live_" + token.dropFirst(9)] {
            XCTAssertNil(TokenFormat.parse(bad, as: .admin), bad)
        }
    }
}

final class TokenVerifierTests: XCTestCase {
    // Cheap parameters keep the suite fast; production uses Argon2id.owasp.
    let fast = Argon2id(iterations: 1, memoryKiB: 1024, parallelism: 1)

    func testArgon2idHashesVerifyAndRejectChangedTokens() throws {
        let (token, _) = TokenFormat.generate(.vault)
        let hash = try Argon2id.owasp.hash(token)
        XCTAssertTrue(hash.hasPrefix("$argon2id$v=19$m=19456,t=2,p=1$"))
        XCTAssertTrue(Argon2id.verify(token, encoded: hash))
        XCTAssertFalse(Argon2id.verify(token + "x", encoded: hash))
        XCTAssertFalse(Argon2id.verify(token, encoded: "$argon2id$garbage"))
        XCTAssertNotEqual(try Argon2id.owasp.hash(token), hash, "random salt per hash")
    }

    func testCacheSkipsArgon2AfterOneSuccessfulVerify() async throws {
        let verifier = TokenVerifier(argon2: fast)
        let (token, _) = TokenFormat.generate(.vault)
        let parsed = try XCTUnwrap(TokenFormat.parse(token, as: .vault))
        let hash = try fast.hash(token)
        let first = try await verifier.verify(parsed, storedHash: hash, tenant: "ten_a", client: "203.0.113.1")
        XCTAssertTrue(first)
        // A garbage hash would fail argon2: success proves the cached digest was used.
        let cached = try await verifier.verify(parsed, storedHash: "$argon2id$not-a-hash", tenant: "ten_a", client: "203.0.113.1")
        XCTAssertTrue(cached)
        // A different token with the same id does not ride on the cache.
        var chars = Array(token)
        chars[chars.count - 1] = chars.last == "a" ? "b" : "a"
        let other = try XCTUnwrap(TokenFormat.parse(String(chars), as: .vault))
        let forged = try await verifier.verify(other, storedHash: hash, tenant: "ten_a", client: "203.0.113.1")
        XCTAssertFalse(forged)
        verifier.forget(publicId: parsed.publicId)
        let afterForget = try await verifier.verify(parsed, storedHash: "$argon2id$not-a-hash", tenant: "ten_a", client: "203.0.113.1")
        XCTAssertFalse(afterForget)
    }

    func testRepeatedFailuresAreLimitedWithoutHashing() async throws {
        var config = TokenVerifier.Configuration()
        config.maxFailures = 3
        let verifier = TokenVerifier(configuration: config, argon2: fast)
        let (token, _) = TokenFormat.generate(.admin)
        let hash = try fast.hash(token)
        var chars = Array(token)
        chars[chars.count - 1] = chars.last == "a" ? "b" : "a"
        let wrong = try XCTUnwrap(TokenFormat.parse(String(chars), as: .admin))
        for _ in 0..<3 {
            let ok = try await verifier.verify(wrong, storedHash: hash, tenant: "ten_a", client: "203.0.113.1")
            XCTAssertFalse(ok)
        }
        do {
            _ = try await verifier.verify(wrong, storedHash: hash, tenant: "ten_a", client: "203.0.113.1")
            XCTFail("fourth failure should be refused")
        } catch {
            XCTAssertEqual(error.code, "rate_limited")
            XCTAssertEqual(error.status, 429)
            XCTAssertNotNil(error.retryAfterSeconds)
        }
        // Even the right token is refused while the id is locked out (no hashing happens).
        let right = try XCTUnwrap(TokenFormat.parse(token, as: .admin))
        do {
            _ = try await verifier.verify(right, storedHash: hash, tenant: "ten_a", client: "203.0.113.1")
            XCTFail("locked id should not be verified")
        } catch {
            XCTAssertEqual(error.code, "rate_limited")
        }
    }

    /// 300 concurrent wrong secrets for one id: attempts are counted before hashing and one verification per id is
    /// in flight, so only `maxFailures` are hashed; meanwhile another id's fresh token verifies (the flood holds one
    /// hash slot at most). With production argon2 parameters, as an attacker would meet them.
    func testAFloodOfWrongSecretsForOneIdHashesAHandfulAndLeavesOtherIdsAlone() async throws {
        let verifier = TokenVerifier(argon2: .owasp)
        let (token, _) = TokenFormat.generate(.admin)
        let hash = try Argon2id.owasp.hash(token)
        let (other, _) = TokenFormat.generate(.admin)
        let otherHash = try Argon2id.owasp.hash(other)
        let wrong = try (0..<300).map { i -> ParsedToken in
            var chars = Array(token)
            chars[chars.count - 1 - (i % 8)] = chars[chars.count - 1 - (i % 8)] == "a" ? "b" : "a"
            return try XCTUnwrap(TokenFormat.parse(String(chars), as: .admin))
        }
        let parsedOther = try XCTUnwrap(TokenFormat.parse(other, as: .admin))
        let (refused, otherOK, otherSeconds) = try await withThrowingTaskGroup(of: (Bool?, Double?).self) { group in
            for w in wrong {
                group.addTask {
                    do { return (try await verifier.verify(w, storedHash: hash, tenant: "ten_a", client: "203.0.113.1"), nil) } catch { return (nil, nil) }
                }
            }
            group.addTask {
                try await Task.sleep(for: .milliseconds(20))   // the flood is under way
                let started = ContinuousClock.now
                let ok = try await verifier.verify(parsedOther, storedHash: otherHash, tenant: "ten_a", client: "203.0.113.1")
                let elapsed = ContinuousClock.now - started
                return (ok, elapsed.timeInterval)
            }
            var refused = 0, otherOK = false, seconds = 0.0
            for try await (result, elapsed) in group {
                if let elapsed { otherOK = result == true; seconds = elapsed } else if result == nil { refused += 1 }
            }
            return (refused, otherOK, seconds)
        }
        print("argon2 flood: \(verifier.hashesPerformed) hashes for 300 wrong secrets + 1 valid token of another id (\(String(format: "%.3f", otherSeconds)) s)")
        XCTAssertLessThanOrEqual(verifier.hashesPerformed, TokenVerifier.Configuration().maxFailures + 1, "hashes of the flood + the other id's one")
        XCTAssertGreaterThanOrEqual(refused, 300 - TokenVerifier.Configuration().maxFailures, "the rest refused without hashing")
        XCTAssertTrue(otherOK, "another id's valid token still verifies")
    }

    func testSchedulerBoundsConcurrency() async throws {
        let scheduler = HashScheduler(permits: 2)
        let counter = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<10 {
                group.addTask {
                    try await scheduler.withPermit(i % 2 == 0 ? .verify : .store, tenant: "ten_\(i % 3)", client: "c\(i)") {
                        await counter.enter()
                        try await Task.sleep(for: .milliseconds(5))
                        await counter.leave()
                    }
                }
            }
            try await group.waitForAll()
        }
        let peak = await counter.peak
        XCTAssertEqual(peak, 2)
    }

    actor Counter {
        var current = 0
        var peak = 0
        func enter() { current += 1; peak = max(peak, current) }
        func leave() { current -= 1 }
    }
}
