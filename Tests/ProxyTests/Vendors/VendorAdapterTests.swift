import Foundation
import KeybrakeCore
import XCTest
@testable import Proxy

/// What each adapter says about its vendor, beyond reading and pricing (RequestReadingTests): the idempotency header,
/// the objects whose later moves are priced above what this request moved, which answer headers a replay keeps, and
/// the error envelope its official SDK parses. The HTTP behaviour is in the proxy's tests and the SDKs' e2e suite.
final class VendorAdapterTests: XCTestCase {
    let stripe = StripeAdapter(pricer: StripePricer())
    let twilio = TwilioAdapter(pricer: TwilioPricer())
    let resend = ResendAdapter(pricer: ResendPricer())
    let refused = KeybrakeError(status: 429, code: .dailyUSDCapExceeded, message: "Daily cap reached.", retryAfterSeconds: 7)

    func testOnlyVendorsThatDeduplicateGetAnIdempotencyKeyUpstream() {
        XCTAssertEqual(stripe.idempotencyKeyHeader, "Idempotency-Key")
        XCTAssertEqual(resend.idempotencyKeyHeader, "Idempotency-Key")
        XCTAssertNil(twilio.idempotencyKeyHeader, "Twilio has no idempotency: a retry could send the SMS twice")
        XCTAssertTrue(stripe.deduplicatesIdempotencyKeys)
        XCTAssertFalse(twilio.deduplicatesIdempotencyKeys)
    }

    func testAChargeAndAPaymentIntentAreTheObjectsWhoseLaterMovesAreCountedAboveThem() {
        XCTAssertTrue(stripe.createsCountedObject(path: "/v1/charges"))
        XCTAssertTrue(stripe.createsCountedObject(path: "/v1/payment_intents"))
        XCTAssertFalse(stripe.createsCountedObject(path: "/v1/refunds"))
        XCTAssertFalse(stripe.createsCountedObject(path: "/v1/payment_intents/pi_1/confirm"))
        XCTAssertFalse(twilio.createsCountedObject(path: "/2010-04-01/Accounts/AC1/Messages.json"))
    }

    func testAReplayKeepsTheContentTypeAndTheVendorsOwnRequestId() {
        XCTAssertEqual(stripe.replayedResponseHeaders, ["content-type", "request-id", "stripe-version"])
        XCTAssertEqual(twilio.replayedResponseHeaders, ["content-type", "twilio-request-id"])
        XCTAssertEqual(resend.replayedResponseHeaders, ["content-type", "x-request-id"])
    }

    /// The body each official SDK parses into its usual exception (headers and status: the proxy's HTTP tests).
    func testEachVendorsErrorIsInItsOwnEnvelope() throws {
        let inner = try XCTUnwrap(stripe.errorEnvelope(refused)["error"] as? [String: Any])
        XCTAssertEqual(inner["type"] as? String, "rate_limit_error", "stripe-python raises RateLimitError for it")
        XCTAssertEqual(inner["code"] as? String, "daily_usd_cap_exceeded")
        XCTAssertEqual(inner["message"] as? String, "Daily cap reached.")

        let t = twilio.errorEnvelope(refused)
        XCTAssertEqual(t["code"] as? Int, 20429, "Twilio's codes are integers")
        XCTAssertEqual(t["status"] as? Int, 429)
        XCTAssertEqual(t["message"] as? String, "Daily cap reached. [daily_usd_cap_exceeded]")
        XCTAssertEqual(t["more_info"] as? String, "keybrake:daily_usd_cap_exceeded")

        let r = resend.errorEnvelope(refused)
        XCTAssertEqual(r["name"] as? String, "daily_usd_cap_exceeded")
        XCTAssertEqual(r["statusCode"] as? Int, 429)

        let reused = KeybrakeError(status: 400, code: .idempotencyKeyReused, message: "m")
        XCTAssertEqual((stripe.errorEnvelope(reused)["error"] as? [String: Any])?["type"] as? String, "idempotency_error")
        let down = KeybrakeError(status: 503, code: .upstreamBusy, message: "m")
        XCTAssertEqual((stripe.errorEnvelope(down)["error"] as? [String: Any])?["type"] as? String, "api_error")
        XCTAssertEqual(twilio.errorEnvelope(down)["code"] as? Int, 20500)
    }
}
