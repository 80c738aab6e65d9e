import Foundation
import Support
import XCTest

/// `duplicateJSONKey`, which the readers of hand-editable JSON (checkpoints, best.json, evaluations) use to refuse a
/// key given twice in one object, and `describeDecodingError`'s words for what a value should have been.
final class JSONReadingTests: XCTestCase {
    func duplicate(_ text: String) -> String? { duplicateJSONKey(Data(text.utf8)) }

    func testAKeyGivenTwiceInOneObjectIsFoundWithItsPath() {
        XCTAssertNil(duplicate(#"{"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]}"#))   // one key in different objects
        XCTAssertEqual(duplicate(#"{"n": 225, "x": true, "n": 99999}"#), "n")
        XCTAssertEqual(duplicate(#"{"f1": {"mean": 0.5, "std": 0.1, "mean": 0.9}}"#), "f1.mean")
        XCTAssertEqual(duplicate(#"{"members": [{"a": 1}, {"b": 1, "b": 2}]}"#), "members[1].b")
        XCTAssertEqual(duplicate(#"[[], {"k": 1, "k": 1}]"#), "[1].k")
        // The same key spelled with an escape is the same key to every reader.
        XCTAssertEqual(duplicate(#"{"step": 1, "\u0073tep": 2}"#), "step")
        // Text inside a string value is not a key, a key holding a quote or a brace is read whole.
        XCTAssertNil(duplicate(#"{"note": "{\"a\": 1, \"a\": 2}", "a": 1}"#))
        XCTAssertNil(duplicate(#"{"a\"b": 1, "a": 2, "{b": 3, "b": 4}"#))
        XCTAssertEqual(duplicate(#"{"a\"b": 1, "a\"b": 2}"#), #"a"b"#)
        // Not JSON: nothing to say, no crash (the parser reports it).
        for text in [#"{"a": 1, "a"#, "{{{{", "]]]}}}", #"{"a\"#, "", #"{"a": [1, 2,"#] { _ = duplicate(text) }
        XCTAssertNil(duplicate(String(repeating: "[", count: 100_000)))
    }

    func testDecodingErrorsSayWhatTheValueShouldBe() {
        struct S: Decodable { let a: Double; let b: Bool; let c: [Int] }
        func message(_ text: String) -> String {
            switch Result(catching: { try JSONDecoder().decode(S.self, from: Data(text.utf8)) }) {
            case .success: return ""
            case .failure(let error): return describeDecodingError(error, data: Data(text.utf8))
            }
        }
        XCTAssertEqual(message("[1]"), "the top level: expected a JSON object")
        XCTAssertEqual(message(#"{"a": "x", "b": true, "c": []}"#), "key a: expected a number")
        XCTAssertEqual(message(#"{"a": 1, "b": "no", "c": []}"#), "key b: expected true or false")
        XCTAssertEqual(message(#"{"a": 1, "b": true, "c": {}}"#), "key c: expected a JSON array")
        XCTAssertTrue(message(#"{"a": 1, "b": null, "c": []}"#).hasPrefix("key b: expected true or false"))
        // Foundation names no key for a number that fits no Int: valid JSON is not called invalid.
        XCTAssertTrue(message(#"{"a": 1, "b": true, "c": [1e20]}"#).hasPrefix("a value fits no type of its key, probably a number"))
        XCTAssertTrue(message(#"{"a": 1, "b": true, "c": [1e20"#).hasPrefix("not valid JSON"))
        // Text that is not JSON is said in the parser's words, with where (a session 50 probe: no position was given).
        XCTAssertEqual(message(#"{"a": NaN, "b": true, "c": []}"#), "not valid JSON (Invalid value around character 6.)")
        XCTAssertTrue(message(String(repeating: "[", count: 1000)).hasPrefix("not valid JSON (Too many nested arrays or dictionaries around character"))
    }
}
