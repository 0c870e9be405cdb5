import Foundation
import KeybrakeServer
import Logging
import PostgresNIO
import Storage
import XCTest

/// openapi.yaml is a contract: it must list exactly the routes the server registers.
final class OpenAPIContractTests: XCTestCase {
    static let specPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("openapi.yaml").path

    /// (METHOD, /path/{param}) pairs under `paths:` — the spec keeps paths at two spaces, methods at four.
    static func specRoutes() throws -> Set<String> {
        let text = try String(contentsOfFile: specPath, encoding: .utf8)
        var routes = Set<String>()
        var inPaths = false
        var currentPath: String?
        let methods: Set<String> = ["get", "put", "post", "delete", "patch", "head", "options"]
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if !line.hasPrefix(" ") && !line.isEmpty { inPaths = line.hasPrefix("paths:"); currentPath = nil; continue }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), !line.hasPrefix("   ") {
                currentPath = String(line.dropFirst(2).prefix { $0 != ":" })
            } else if line.hasPrefix("    "), !line.hasPrefix("     "), let path = currentPath {
                let key = line.dropFirst(4).prefix { $0 != ":" }
                if methods.contains(String(key)) { routes.insert("\(key.uppercased()) \(path)") }
            }
        }
        return routes
    }

    func testSpecListsExactlyTheRegisteredRoutes() async throws {
        let config = try TestApp.configuration()
        let postgres = PostgresClient(configuration: config.databaseURL.clientConfiguration(), backgroundLogger: Logger(label: "t"))
        let services = Services(configuration: config, postgres: DatabasePool(fixed: postgres))
        let router = buildRouter(services)
        try await services.forwarder.shutdown()
        // The proxy mounts the vendors' own APIs (/stripe/**, /twilio/**, /resend/**); those are the vendors'
        // contracts, not ours, so the spec describes them in prose and the comparison leaves them out.
        // The dashboard's HTML pages (/dashboard/**) are not part of the admin JSON API either.
        let proxyPrefixes = ["/stripe/", "/twilio/", "/resend/", "stripe/", "twilio/", "resend/"]
        let dashboardPrefixes = ["/dashboard", "dashboard"]
        let isProxy = { (path: String) in proxyPrefixes.contains { path.hasPrefix($0) } }
        let isDashboard = { (path: String) in dashboardPrefixes.contains { path.hasPrefix($0) } }
        let adminRoutes = router.routes.filter { !isProxy($0.path.description) && !isDashboard($0.path.description) }
        XCTAssertEqual(router.routes.filter { isProxy($0.path.description) }.count, 18, "three vendors × six methods")
        XCTAssertFalse(router.routes.filter { isDashboard($0.path.description) }.isEmpty, "the dashboard's routes are registered")
        let served = Set(adminRoutes.map { route -> String in
            // Hummingbird writes parameters as {name}, the same as OpenAPI.
            let path = route.path.description.hasPrefix("/") ? route.path.description : "/" + route.path.description
            return "\(route.method.rawValue) \(path)"
        })
        let documented = try Self.specRoutes()
        XCTAssertFalse(documented.isEmpty, "no routes parsed from openapi.yaml")
        XCTAssertEqual(served.subtracting(documented).sorted(), [], "served but not in openapi.yaml")
        XCTAssertEqual(documented.subtracting(served).sorted(), [], "in openapi.yaml but not served")
    }
}
