import Storage
import XCTest

final class SQLScriptTests: XCTestCase {
    func testSplitsOnSemicolonsOutsideQuotesCommentsAndDollarBodies() {
        let sql = """
            -- a comment; with a semicolon
            CREATE TABLE a (x TEXT DEFAULT 'semi;colon', "odd;name" INT);
            /* block; comment /* nested; */ still; */
            INSERT INTO a VALUES ('it''s; fine', 1);
            CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END; $$ LANGUAGE plpgsql;
            CREATE FUNCTION g() RETURNS int AS $body$ SELECT 2; $body$ LANGUAGE sql;
            SELECT $1::int;
            """
        let statements = SQLScript.statements(sql)
        XCTAssertEqual(statements.count, 5, "\(statements)")
        XCTAssertTrue(statements[0].hasSuffix("\"odd;name\" INT)"))
        XCTAssertTrue(statements[1].contains("'it''s; fine'"))
        XCTAssertTrue(statements[2].contains("RETURN 1; END; $$"))
        XCTAssertTrue(statements[3].contains("SELECT 2; $body$"))
        XCTAssertEqual(statements[4], "SELECT $1::int")
    }

    func testIgnoresEmptyAndCommentOnlyStatements() {
        XCTAssertEqual(SQLScript.statements(";;\n-- only a comment\n;"), [])
    }
}
