import Support
import Foundation
import NN
import TrialData
import XCTest

/// A corpus of malformed rows: each must fail with file:line (and column where it applies) and a message
/// saying what was expected; with skip_bad_rows the row is skipped and reported, never silently dropped.
final class MalformedRowTests: XCTestCase {
    static let hierarchy = try! ICD10Hierarchy(path: repoRoot + "/data/icd10/icd10cm_2025_hierarchy.tsv")
    let header = "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria\n"
    // A good row whose criteria field spans three lines (lines 2-4), so the bad row is on line 5.
    let good = "NCT00000001,completed,,1,phase 1,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug a'],['CC(=O)O'],\"Inclusion Criteria:\n- adults\n- consent\"\n"

    func row(nctid: String = "NCT00000002", label: String = "0", diseases: String = "['asthma']",
             icd: String = "\"[\"\"['J45.909']\"\"]\"", drugs: String = "['drug b']", smiles: String = "['c1ccccc1O']",
             criteria: String = "\"- children\"") -> String {
        "\(nctid),terminated,,\(label),phase 2,\(diseases),\(icd),\(drugs),\(smiles),\(criteria)\n"
    }

    /// This test's scratch folder (each test its own), removed after it.
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cladmop-bad-rows-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func file(_ text: String, _ name: String) -> String {
        let path = dir + "/\(name).csv"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)), path)
        return path
    }

    func expectError(_ text: String, _ name: String, contains expected: String, line: Int?, file: StaticString = #filePath, l: UInt = #line) {
        let path = self.file(text, name)
        XCTAssertThrowsError(try readValidatedTrials(paths: [path], hierarchy: Self.hierarchy, skipBadRows: false), name, file: file, line: l) { error in
            let message = "\(error)"
            XCTAssertTrue(error is InputError, "\(name): \(message)", file: file, line: l)
            XCTAssertTrue(message.contains(expected), "\(name): expected '\(expected)' in: \(message)", file: file, line: l)
            if let line { XCTAssertTrue(message.hasPrefix("\(path):\(line)"), "\(name): expected \(path):\(line) in: \(message)", file: file, line: l) }
        }
    }

    func testEveryKindOfMalformedRow() {
        let cases: [(String, String, String, Int?)] = [
            ("unterminated-quote", header + good + row(criteria: "\"- never closed"), "unterminated quoted field", 5),
            ("missing-column", header + good + "NCT00000002,terminated,,0,phase 2,['a'],\"[\"\"['J45.909']\"\"]\",['d'],['C']\n", "expected 10 columns, found 9", 5),
            ("extra-column", header + good + row(criteria: "x,y"), "expected 10 columns, found 11", 5),
            ("bad-nctid", header + good + row(nctid: "NCT12"), "column nctid", 5),
            ("bad-label", header + good + row(label: "yes"), "column label: \"yes\" (expected 0 or 1)", 5),
            ("diseases-not-list", header + good + row(diseases: "asthma"), "column diseases: unparsable list literal", 5),
            ("smiles-unterminated-string", header + good + row(smiles: "\"['CCO]\""), "column smiless: unparsable list literal", 5),
            ("icd-inner-unparsable", header + good + row(icd: "\"[\"\"['J45.909'\"\"]\""), "column icdcodes: inner list", 5),
            ("icd-outer-unparsable", header + good + row(icd: "J45"), "column icdcodes: unparsable list literal", 5),
            ("smiles-unclosed-bracket", header + good + row(smiles: "['C[NH4']"), "invalid SMILES", 5),
            ("smiles-unbalanced-paren", header + good + row(smiles: "['CC(C']"), "invalid SMILES", 5),
            ("smiles-bad-character", header + good + row(smiles: "['CC!C']"), "unexpected character '!'", 5),
            ("unknown-icd-code", header + good + row(icd: "\"[\"\"['QQ9.99']\"\"]\""), "unknown ICD-10 code \"QQ9.99\"", 5),
            ("header-missing-column", "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless\n", "header lacks column(s) criteria", 1),
            ("stray-quote", header + good + row(drugs: "['dr\"ug']"), "stray quote", 5),
            ("text-after-quote", header + good + row(criteria: "\"- a\"b"), "unexpected character after a closing quote", 5),
            ("empty-file", "", "empty file", nil),
            ("drugs-trailing-text", header + good + row(drugs: "['a'] b"), "text after the closing ']'", 5),
            ("bad-escape", header + good + row(diseases: "['\\u12']"), "bad \\u escape", 5),
        ]
        XCTAssertGreaterThanOrEqual(cases.count, 15)
        for (name, text, expected, line) in cases { expectError(text, name, contains: expected, line: line) }
        // Not UTF-8.
        let path = dir + "/latin1.csv"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(header.utf8) + Data(good.utf8) + Data([0x4E, 0x43, 0x54, 0xE9, 0x2C, 0x0A])), path)
        XCTAssertThrowsError(try readValidatedTrials(paths: [path], hierarchy: Self.hierarchy, skipBadRows: false)) {
            XCTAssertTrue("\($0)".contains("\(path):5:1: field is not valid UTF-8"), "\($0)")
        }
    }

    /// Labels are required by default (featurize, fine-tuning, evaluation): an empty field or a missing column is refused
    /// as before; `.optional` (trials to predict) reads them as nil and still refuses a label other than 0 or 1.
    func testLabelsMayBeEmptyOrAbsentOnlyWhenOptional() throws {
        let blank = file(header + good + row(label: ""), "label-blank")
        XCTAssertThrowsError(try readValidatedTrials(paths: [blank], hierarchy: Self.hierarchy, skipBadRows: false)) {
            XCTAssertTrue("\($0)".hasPrefix("\(blank):5:") && "\($0)".contains("column label: \"\" (expected 0 or 1)"), "\($0)")
        }
        let read = try readValidatedTrials(paths: [blank], hierarchy: Self.hierarchy, skipBadRows: false, labels: .optional).0
        XCTAssertEqual(read.map(\.label), [1, nil])

        let dropped = (header + good + row()).split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            // The label is the 4th field of every line that starts a record here (the criteria lines hold no comma).
            guard line.hasPrefix("nctid") || line.hasPrefix("NCT") else { return String(line) }
            var fields = line.split(separator: ",", maxSplits: 4, omittingEmptySubsequences: false)
            fields.remove(at: 3)
            return fields.joined(separator: ",")
        }.joined(separator: "\n")
        let noColumn = file(dropped, "label-absent")
        XCTAssertThrowsError(try readValidatedTrials(paths: [noColumn], hierarchy: Self.hierarchy, skipBadRows: false)) {
            XCTAssertTrue("\($0)".hasPrefix("\(noColumn):1:") && "\($0)".contains("header lacks column(s) label"), "\($0)")
        }
        let optional = try readValidatedTrials(paths: [noColumn], hierarchy: Self.hierarchy, skipBadRows: false, labels: .optional).0
        XCTAssertEqual(optional.map(\.nctid), ["NCT00000001", "NCT00000002"])
        XCTAssertEqual(optional.map(\.label), [nil, nil])
        XCTAssertEqual(optional.map(\.criteria), ["Inclusion Criteria:\n- adults\n- consent", "- children"])

        let bad = file(header + good + row(label: "yes"), "label-yes-optional")
        XCTAssertThrowsError(try readValidatedTrials(paths: [bad], hierarchy: Self.hierarchy, skipBadRows: false, labels: .optional)) {
            XCTAssertTrue("\($0)".hasPrefix("\(bad):5:") && "\($0)".contains("column label: \"yes\" (expected 0, 1 or empty)"), "\($0)")
        }
    }

    func testSkipBadRowsCountsAndReportsThem() throws {
        let path = file(header + good + row(label: "7") + row(nctid: "NCT00000003"), "skip")
        let (trials, report) = try readValidatedTrials(paths: [path], hierarchy: Self.hierarchy, skipBadRows: true)
        XCTAssertEqual(trials.map(\.nctid), ["NCT00000001", "NCT00000003"])
        XCTAssertEqual(report.skipped.count, 1)
        XCTAssertTrue(report.skipped[0].hasPrefix("\(path):5"), report.skipped[0])
    }

    func testGoodRowSpanningLinesParses() throws {
        let path = file(header + good + row(), "good")
        let (trials, _) = try readValidatedTrials(paths: [path], hierarchy: Self.hierarchy, skipBadRows: false)
        XCTAssertEqual(trials.count, 2)
        XCTAssertEqual(trials[0].icdCodes, [["J45.909"]])
        XCTAssertEqual(trials[1].source.description, "\(path):5")
    }
}
