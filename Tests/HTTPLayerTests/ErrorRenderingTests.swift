import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import KeybrakeCore
import Logging
import NIOCore
import XCTest

@testable import HTTPLayer

/// One rendering of every admin error: `{"error":{"code","message","field"}}`, the code again in
/// `Keybrake-Error-Code`, `Retry-After` when there is one, a request id on every answer — and nothing from an
/// unexpected error leaks into it.
final class ErrorRenderingTests: XCTestCase {
    struct Secret: Error { let password = "hunter2" }

    static func answer(_ uri: String) async throws -> (status: HTTPResponse.Status, headers: HTTPFields, error: [String: Any]) {
        let router = Router(context: KeybrakeRequestContext.self)
        router.add(middleware: RequestEnvelopeMiddleware())
        router.get("/invalid") { _, _ -> String in
            throw KeybrakeError.invalidRequest("daily_usd_cap must be a dollar amount.", field: "daily_usd_cap")
        }
        router.get("/limited") { _, _ -> String in
            throw KeybrakeError.rateLimited("Too many signups from this address; try again in 42 s.", retryAfter: 42)
        }
        router.get("/secret") { _, _ -> String in throw Secret() }
        return try await Application(router: router).test(.router) { client in
            let response = try await client.execute(uri: uri, method: .get)
            let json = try JSONSerialization.jsonObject(with: Data(buffer: response.body)) as? [String: Any]
            return (response.status, response.headers, try XCTUnwrap(json?["error"] as? [String: Any]))
        }
    }

    func testAnErrorIsRenderedAsOneEnvelopeWithItsCodeInAHeader() async throws {
        let (status, headers, error) = try await Self.answer("/invalid")
        XCTAssertEqual(status.code, 400)
        XCTAssertEqual(headers[.keybrakeErrorCode], "invalid_request")
        XCTAssertNil(headers[.retryAfter])
        XCTAssertEqual(headers[.contentType], "application/json; charset=utf-8")
        XCTAssertTrue(headers[.keybrakeRequestId]?.hasPrefix("req_") ?? false)
        XCTAssertEqual(error["code"] as? String, "invalid_request")
        XCTAssertEqual(error["message"] as? String, "daily_usd_cap must be a dollar amount.")
        XCTAssertEqual(error["field"] as? String, "daily_usd_cap")
    }

    func testAnErrorWithoutAFieldSaysNullAndARateLimitSaysWhenToRetry() async throws {
        let (status, headers, error) = try await Self.answer("/limited")
        XCTAssertEqual(status.code, 429)
        XCTAssertEqual(headers[.retryAfter], "42")
        XCTAssertTrue(error.keys.contains("field"), "the shape stays the same: field is there, as null")
        XCTAssertTrue(error["field"] is NSNull)
    }

    func testAnUnexpectedErrorIsA500ThatSaysNothingOfItsCause() async throws {
        let (status, headers, error) = try await Self.answer("/secret")
        XCTAssertEqual(status.code, 500)
        XCTAssertEqual(headers[.keybrakeErrorCode], "internal_error")
        XCTAssertFalse("\(error)".contains("hunter2"))
        XCTAssertFalse("\(error)".contains("Secret"))
        let (notFound, _, missing) = try await Self.answer("/nowhere")
        XCTAssertEqual(notFound.code, 404)
        XCTAssertEqual(missing["code"] as? String, "not_found")
    }

    func testFrameworkErrorsMapToTheVocabulary() {
        let logger = Logger(label: "test")
        XCTAssertEqual(RequestEnvelopeMiddleware.keybrakeError(from: HTTPError(.contentTooLarge), logger: logger).code, "body_too_large")
        XCTAssertEqual(RequestEnvelopeMiddleware.keybrakeError(from: HTTPError(.methodNotAllowed), logger: logger).status, 405)
        XCTAssertEqual(RequestEnvelopeMiddleware.keybrakeError(from: HTTPError(.badRequest, message: "bad header"), logger: logger),
                       .invalidRequest("bad header"))
        let own = KeybrakeError(status: 409, code: "key_revoked", message: "m")
        XCTAssertEqual(RequestEnvelopeMiddleware.keybrakeError(from: own, logger: logger), own, "our own errors pass through untouched")
    }
}
