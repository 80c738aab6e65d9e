import Foundation
import NN
import Support
import TestSupport
import TrialData
import XCTest

/// CSV dialects: LF, CR LF and lone CR line endings, with or without a UTF-8 byte-order mark, give the same
/// trials (fields, criteria text, criterion sentences and their inclusion tags, line numbers); a header
/// naming a column twice, an nctid other than NCT + 8 ASCII digits and a duplicate id in one file are refused
/// naming file:line(:column).
final class CSVDialectTests: XCTestCase {
    static let hierarchy = try! ICD10Hierarchy(path: repoRoot + "/data/icd10/icd10cm_2025_hierarchy.tsv")
    let header = "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria\n"
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cladmop-dialect-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ bytes: Data) -> String {
        let path = dir + "/" + name
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: bytes), path)
        return path
    }

    /// The same trials, field by field (the file name aside).
    func assertSameTrials(_ a: [Trial], _ b: [Trial], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x.nctid, y.nctid, what, file: file, line: line)
            XCTAssertEqual(x.status, y.status, what, file: file, line: line)
            XCTAssertEqual(x.whyStop, y.whyStop, what, file: file, line: line)
            XCTAssertEqual(x.label, y.label, what, file: file, line: line)
            XCTAssertEqual(x.phase, y.phase, what, file: file, line: line)
            XCTAssertEqual(x.diseases, y.diseases, what, file: file, line: line)
            XCTAssertEqual(x.icdCodes, y.icdCodes, what, file: file, line: line)
            XCTAssertEqual(x.drugs, y.drugs, what, file: file, line: line)
            XCTAssertEqual(x.smiles, y.smiles, what, file: file, line: line)
            XCTAssertEqual(x.criteria, y.criteria, "\(what): criteria of \(x.nctid)", file: file, line: line)
            XCTAssertEqual(x.source.line, y.source.line, "\(what): line of \(x.nctid)", file: file, line: line)
            let sx = splitCriteria(x.criteria), sy = splitCriteria(y.criteria)
            XCTAssertEqual(sx.count, sy.count, "\(what): sentence count of \(x.nctid)", file: file, line: line)
            XCTAssertEqual(sx.map(\.inclusion), sy.map(\.inclusion), "\(what): inclusion tags of \(x.nctid)", file: file, line: line)
            XCTAssertEqual(sx, sy, "\(what): sentences of \(x.nctid)", file: file, line: line)
        }
    }

    func testLFCRLFCRAndBOMGiveIdenticalTrials() throws {
        // Rows of a bundled file (criteria spanning many lines, in quotes) and a hand-made row with headings.
        let records = try readCSV(path: repoRoot + "/data/top/phase_I_valid.csv")
        func quoted(_ f: String) -> String {
            f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
        }
        var lf = records.prefix(9).map { $0.fields.map(quoted).joined(separator: ",") }.joined(separator: "\n") + "\n"
        lf += "NCT00000099,completed,,1,phase 1,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug a'],['CC(=O)O'],"
            + "\"Inclusion Criteria:\n\n  - adults aged 18 or more\n  - written consent\n\nExclusion Criteria:\n\n  - pregnancy\n  - prior \"\"drug a\"\"\n\n\"\n"
        XCTAssertFalse(lf.contains("\r"))
        let variants: [(String, Data)] = [
            ("crlf", Data(lf.replacingOccurrences(of: "\n", with: "\r\n").utf8)),
            ("cr", Data(lf.replacingOccurrences(of: "\n", with: "\r").utf8)),
            ("bom-lf", Data([0xEF, 0xBB, 0xBF]) + Data(lf.utf8)),
            ("bom-crlf", Data([0xEF, 0xBB, 0xBF]) + Data(lf.replacingOccurrences(of: "\n", with: "\r\n").utf8)),
            ("crlf-no-final-newline", Data(String(lf.dropLast()).replacingOccurrences(of: "\n", with: "\r\n").utf8)),
        ]
        let reference = try readValidatedTrials(paths: [write("lf.csv", Data(lf.utf8))], hierarchy: Self.hierarchy, skipBadRows: false).0
        XCTAssertEqual(reference.count, 9)
        XCTAssertTrue(reference.contains { t in splitCriteria(t.criteria).count >= 10 }, "a multi-sentence criteria field is compared")
        let mine = splitCriteria(reference.last!.criteria)
        XCTAssertEqual(mine.map(\.text), ["adults aged 18 or more", "written consent", "pregnancy", "prior \"drug a\""])
        XCTAssertEqual(mine.map(\.inclusion), [true, true, false, false])
        for (name, bytes) in variants {
            let trials = try readValidatedTrials(paths: [write(name + ".csv", bytes)], hierarchy: Self.hierarchy, skipBadRows: false).0
            XCTAssertTrue(trials.allSatisfy { !$0.criteria.contains("\r") && !$0.nctid.contains("\u{FEFF}") }, name)
            assertSameTrials(reference, trials, name)
        }
        // The same through the record layer: the header's first name has no byte-order mark left.
        let bom = try parseCSV(data: variants[3].1, name: "bom-crlf")
        XCTAssertEqual(bom[0].fields[0], "nctid")
        XCTAssertEqual(bom.map(\.line), try parseCSV(data: Data(lf.utf8), name: "lf").map(\.line))
    }

    func testSplitCriteriaReadsEveryLineEnding() {
        let text = "Inclusion Criteria:\n\n- adults\n- consent\n\nExclusion Criteria:\n\n- pregnancy\n- children\n"
        let lf = splitCriteria(text)
        XCTAssertEqual(lf.count, 4)
        XCTAssertEqual(lf.map(\.inclusion), [true, true, false, false])
        for ending in ["\r\n", "\r"] {
            XCTAssertEqual(splitCriteria(text.replacingOccurrences(of: "\n", with: ending)), lf, ending.debugDescription)
        }
    }

    func testTheBundledFilesReadAsBefore() throws {
        // They end their records with CR LF and their criteria lines with LF: nothing of a CR may survive.
        let (trials, _) = try readValidatedTrials(paths: bundledCSVs, hierarchy: Self.hierarchy, skipBadRows: false)
        XCTAssertEqual(trials.count, 1044 + 117 + 446 + 344 + 1024 + 118 + 225)
        XCTAssertTrue(trials.allSatisfy { !$0.criteria.contains("\r") && !$0.status.contains("\r") })
        XCTAssertTrue(trials.allSatisfy { isNCTID($0.nctid) })
    }

    func testHeaderNamingAColumnTwiceIsRefused() throws {
        let dup = "nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria,label\n"
        let row = "NCT00000001,completed,,1,phase 1,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug a'],['CC(=O)O'],\"- adults\",0\n"
        let path = write("dup-header.csv", Data((dup + row).utf8))
        XCTAssertThrowsError(try readTrials(paths: [path])) { error in
            XCTAssertTrue(error is InputError)
            XCTAssertEqual("\(error)", "\(path):1:76: header has column \"label\" twice (fields 4 and 11); each column must be named once")
        }
        // Also with surrounding spaces, and for an unknown column; the byte-order mark does not hide the first name.
        let spaced = write("dup-spaced.csv", Data([0xEF, 0xBB, 0xBF]) + Data("nctid,extra, extra ,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria\r\n".utf8))
        XCTAssertThrowsError(try readTrials(paths: [spaced])) { XCTAssertTrue("\($0)".hasPrefix("\(spaced):1:13: header has column \"extra\" twice (fields 2 and 3)"), "\($0)") }
        let bomNCT = write("dup-nctid.csv", Data([0xEF, 0xBB, 0xBF]) + Data("nctid,status,why_stop,label,phase,diseases,icdcodes,drugs,smiless,criteria,nctid\n".utf8))
        XCTAssertThrowsError(try readTrials(paths: [bomNCT])) { XCTAssertTrue("\($0)".contains("header has column \"nctid\" twice (fields 1 and 11)"), "\($0)") }
    }

    func testNCTIDIsNCTAndEightASCIIDigits() throws {
        let good = "NCT00000001,completed,,1,phase 1,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug a'],['CC(=O)O'],\"- adults\"\n"
        for (i, id) in ["NCT0123456", "NCT012345678", "nct01234567", "NCT0123456\u{0667}", "NCT\u{FF10}1234567", "NCT 1234567",
                        " NCT01234567", "NCT01234567 ", "NCT0123456a", "NCT-1234567", "NCTx01234567", ""].enumerated() {
            let row = "\(id),terminated,,0,phase 2,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug b'],['CCO'],\"- children\"\n"
            let path = write("id-\(i).csv", Data((header + good + row).utf8))
            XCTAssertThrowsError(try readTrials(paths: [path]), id.debugDescription) { error in
                XCTAssertEqual("\(error)", "\(path):3:1: column nctid: \"\(id)\" is not an id like NCT01234567 (expected NCT and 8 ASCII digits)")
            }
        }
        let path = write("id-ok.csv", Data((header + good).utf8))
        XCTAssertEqual(try readTrials(paths: [path]).0.map(\.nctid), ["NCT00000001"])
        XCTAssertTrue(isNCTID("NCT99999999"))
        XCTAssertFalse(isNCTID("NCT9999999\u{0669}"))
    }

    func testDuplicateNCTIDInOneFileNamesBothLines() throws {
        // Line 2-4: a trial whose criteria span three lines; line 5 another; line 6 the first id again.
        let a = "NCT00000001,completed,,1,phase 1,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug a'],['CC(=O)O'],\"Inclusion Criteria:\n- adults\n- consent\"\n"
        let b = "NCT00000002,terminated,,0,phase 2,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug b'],['CCO'],\"- children\"\n"
        let again = a.replacingOccurrences(of: "completed,,1", with: "terminated,,0")
        let path = write("dup-id.csv", Data((header + a + b + again).utf8))
        XCTAssertThrowsError(try readValidatedTrials(paths: [path], hierarchy: Self.hierarchy, skipBadRows: false)) { error in
            XCTAssertTrue(error is InputError)
            XCTAssertEqual("\(error)", "\(path):6: column nctid: NCT00000001 is already on line 2 of this file (duplicate trial id; each trial must appear once per file)")
        }
        // skip_bad_rows does not hide it (which copy is right cannot be told).
        XCTAssertThrowsError(try readValidatedTrials(paths: [path], hierarchy: Self.hierarchy, skipBadRows: true))
        // The same id in two different files is not a duplicate here.
        let other = write("other.csv", Data((header + a).utf8))
        let ok = write("ok.csv", Data((header + a + b).utf8))
        XCTAssertEqual(try readValidatedTrials(paths: [ok, other], hierarchy: Self.hierarchy, skipBadRows: false).0.count, 3)
        // A feature store's rows are checked alike (by the file name the store keeps).
        let json = [(1, 2), (5, 5), (1, 9)].map { id, line in
            "{\"nctid\": \"NCT0000000\(id)\", \"label\": 1, \"phase\": \"phase 1\", \"source\": \"x.csv:\(line)\", \"icd\": [], \"smiles\": [], \"sentences\": [], \"inclusion\": []}"
        }
        let stored = try JSONDecoder().decode([StoredTrial].self, from: Data(("[" + json.joined(separator: ",") + "]").utf8))
        XCTAssertThrowsError(try checkUniqueNCTIDs(stored)) {
            XCTAssertEqual("\($0)", "x.csv:9: column nctid: NCT00000001 is already on line 2 of this file (duplicate trial id; each trial must appear once per file)")
        }
        XCTAssertNoThrow(try checkUniqueNCTIDs(Array(stored.prefix(2))))
        // The bundled files have no id twice within one file.
        for csv in bundledCSVs { XCTAssertNoThrow(try checkUniqueNCTIDs(readTrials(paths: [csv]).0), csv) }
    }

    func testFeaturizeRefusesADuplicateIdWithExit2() throws {
        let a = "NCT00000001,completed,,1,phase 1,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug a'],['CC(=O)O'],\"- adults\"\n"
        let b = "NCT00000002,terminated,,0,phase 2,['asthma'],\"[\"\"['J45.909']\"\"]\",['drug b'],['CCO'],\"- children\"\n"
        let csv = write("dup.csv", Data((header + a + b + a).utf8))
        let r = try runProduct("cladmop", ["featurize", "--data", csv, "--output", dir + "/out.store",
                                           "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"], timeout: 120)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("\(csv):4: column nctid: NCT00000001 is already on line 2"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out.store"))
    }
}
