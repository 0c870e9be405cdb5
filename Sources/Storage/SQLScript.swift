import Foundation

/// Splits a migration file into single statements. PostgresNIO speaks only the extended protocol,
/// which accepts one statement per query, so files are split here: on `;` outside quotes,
/// quoted identifiers, comments and dollar-quoted bodies (`$$ … $$`, `$fn$ … $fn$`).
public enum SQLScript {
    public static func statements(_ sql: String) -> [String] {
        let chars = Array(sql.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var i = 0
        func flush() {
            let text = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty && !isOnlyComments(text) { statements.append(text) }
            current = String.UnicodeScalarView()
        }
        while i < chars.count {
            let c = chars[i]
            let next: Unicode.Scalar? = i + 1 < chars.count ? chars[i + 1] : nil
            if c == "-" && next == "-" {  // line comment
                while i < chars.count && chars[i] != "\n" { current.append(chars[i]); i += 1 }
                continue
            }
            if c == "/" && next == "*" {  // block comment (Postgres allows nesting)
                var depth = 0
                repeat {
                    if chars[i] == "/" && i + 1 < chars.count && chars[i + 1] == "*" { depth += 1; current.append(chars[i]); i += 1 }
                    else if chars[i] == "*" && i + 1 < chars.count && chars[i + 1] == "/" { depth -= 1; current.append(chars[i]); i += 1 }
                    current.append(chars[i]); i += 1
                } while depth > 0 && i < chars.count
                continue
            }
            if c == "'" || c == "\"" {  // string or quoted identifier; doubled quote escapes
                current.append(c); i += 1
                while i < chars.count {
                    current.append(chars[i])
                    if chars[i] == c {
                        if i + 1 < chars.count && chars[i + 1] == c { current.append(chars[i + 1]); i += 2; continue }
                        i += 1
                        break
                    }
                    i += 1
                }
                continue
            }
            if c == "$", let tag = dollarTag(chars, at: i) {
                current.append(contentsOf: tag); i += tag.count
                while i < chars.count {
                    if chars[i] == "$", Array(chars[i..<min(chars.count, i + tag.count)]) == tag {
                        current.append(contentsOf: tag); i += tag.count
                        break
                    }
                    current.append(chars[i]); i += 1
                }
                continue
            }
            if c == ";" { flush(); i += 1; continue }
            current.append(c); i += 1
        }
        flush()
        return statements
    }

    /// `$tag$` starting at `i` (tag: letters, digits, underscore, not starting with a digit), or nil for `$1`.
    static func dollarTag(_ chars: [Unicode.Scalar], at i: Int) -> [Unicode.Scalar]? {
        var j = i + 1
        while j < chars.count, chars[j] != "$" {
            let s = chars[j]
            let ok = s == "_" || s.properties.isAlphabetic || (j > i + 1 && ("0"..."9").contains(s))
            if !ok { return nil }
            j += 1
        }
        guard j < chars.count else { return nil }
        return Array(chars[i...j])
    }

    static func isOnlyComments(_ text: String) -> Bool {
        text.split(separator: "\n").allSatisfy { line in
            let t = line.trimmingCharacters(in: .whitespaces)
            return t.isEmpty || t.hasPrefix("--")
        }
    }
}
