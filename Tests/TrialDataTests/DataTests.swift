import Support
import TrialData
import Foundation
import NN
import XCTest

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
let bundledCSVs = ["phase_I_train", "phase_I_valid", "phase_II_valid", "phase_III_valid", "toy_train", "toy_valid", "toy_test"]
    .map { repoRoot + "/data/top/\($0).csv" }

final class BundledDataTests: XCTestCase {
    static let hierarchy = try! ICD10Hierarchy(path: repoRoot + "/data/icd10/icd10cm_2025_hierarchy.tsv")

    func testEveryBundledRowParsesWithValidSMILESAndKnownICD() throws {
        let h = Self.hierarchy
        let (trials, report) = try readTrials(paths: bundledCSVs) { t in
            for s in t.smiles { _ = try tokenizeSMILES(s) }
            for c in t.icdCodes.joined() where h.depth[c] == nil { throw InputError("unknown ICD code \(c)") }
        }
        XCTAssertEqual(report.rowsPerFile[bundledCSVs[0]], 1044)
        XCTAssertEqual(report.rowsPerFile[bundledCSVs[1]], 117)
        XCTAssertEqual(report.rowsPerFile[bundledCSVs[2]], 446)
        XCTAssertEqual(report.rowsPerFile[bundledCSVs[3]], 344)
        XCTAssertEqual(trials.count, 1044 + 117 + 446 + 344 + 1024 + 118 + 225)
        XCTAssertEqual(Set(trials.map(\.nctid)).count, 3095)
        XCTAssertEqual(Set(trials.filter { $0.label == 1 }.map(\.nctid)).count, 2003)
        // No criterion text is lost: after taking out every sentence (in order) from the whitespace-normalised
        // text, only list markers and section-heading words remain.
        var empty = 0
        for t in trials {
            let sentences = splitCriteria(t.criteria)
            if sentences.isEmpty { empty += 1; continue }
            let leftover = leftoverAfterRemoving(sentences.map(\.text), from: t.criteria)
            XCTAssertTrue(leftover.isEmpty, "\(t.source): criterion text lost: \(leftover.prefix(12))")
        }
        XCTAssertLessThanOrEqual(empty, 40, "trials with no criteria text at all")
    }

    func testSCTCorpusExcludesHeldOutAndSplitsByTime() throws {
        let (trials, _) = try readTrials(paths: bundledCSVs)
        let heldOut = try readExclusionList(repoRoot + "/data/top/heldout_nctids.txt")
        XCTAssertEqual(heldOut.count, 1773)
        let sct = SCTCorpus(trials: trials, excluded: heldOut, validationFraction: 0.12)
        let all = sct.train + sct.validation
        XCTAssertEqual(all.count, 2003 - 10, "10 ids are labelled 1 in one file and 0 in another")
        XCTAssertTrue(all.allSatisfy { $0.label == 1 && !heldOut.contains($0.nctid) })
        XCTAssertEqual(Set(all.map(\.nctid)).count, all.count)
        XCTAssertLessThan(sct.train.map(\.nctNumber).max()!, sct.validation.map(\.nctNumber).min()!)
        let fraction = Double(sct.validation.count) / Double(all.count)
        XCTAssertTrue((0.10...0.15).contains(fraction))
    }

    func testICDAncestorsAndUnseenLeaf() {
        let h = Self.hierarchy
        XCTAssertEqual(h.category("C34.90"), "C34")
        let rows = h.ancestorRows("C34.90", maxDepth: h.maxDepth)
        XCTAssertTrue(rows[0] >= 0 && rows[1] >= 0 && rows[2] >= 0 && rows[3] >= 0 && rows[4] >= 0)
        XCTAssertEqual(rows[5], -1)
        XCTAssertEqual(h.resolve("C34.90"), "C34.90")
        XCTAssertEqual(h.resolve("C34.9ZZ"), "C34.9", "an unseen leaf maps to its known ancestor")
        XCTAssertNil(h.resolve("QQQ"))
        // Written without the dot (claims data, CMS's files), a code is the dotted one, not its category.
        XCTAssertEqual(h.resolve("C3490"), "C34.90")
        XCTAssertEqual(h.resolve("e119"), "E11.9")
        XCTAssertEqual(h.resolve("C349ZZ"), "C34.9")
        XCTAssertNil(h.resolve("ZZ999"))
        // A hierarchy listing its codes without dots (CMS's order files) keeps them as written.
        let path = NSTemporaryDirectory() + "cladmop-dotless-\(getpid()).tsv"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try! "id\tparent\tdepth\tdescription\nE00-E89\troot\t1\t\nE08-E13\tE00-E89\t2\t\nE11\tE08-E13\t3\t\nE119\tE11\t4\t\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let dotless = try! ICD10Hierarchy(path: path)
        XCTAssertEqual(dotless.resolve("E119"), "E119")
        XCTAssertEqual(dotless.resolve("e11"), "E11")
    }

    /// The phase numbers of a trial's phase text in the spellings registries export (data.sct_phases reads them):
    /// only TOP's lower-case "phase N" had counted.
    func testPhaseNumbersReadEverySpelling() {
        let cases: [(String, [Int])] = [
            ("phase 1", [1]), ("phase 1/phase 2", [1, 2]), ("Phase 2", [2]), ("PHASE II", [2]), ("phase2", [2]), ("PHASE2", [2]),
            ("PHASE1|PHASE2", [1, 2]), ("EARLY_PHASE1", [1]), ("early phase 1", [1]), ("Phase 2/Phase 3", [2, 3]), ("phase iv", [4]),
            ("Phase-3", [3]), ("Phase I/II", [1, 2]), ("Phase 1/2", [1, 2]), ("phase 2 / 3", [2, 3]), ("Phase 1b", [1]),
            ("Phase IIa", [2]), ("Phase 1b/2a", [1, 2]), ("phase ic", []), ("N/A", []), ("", []), ("not applicable", []),
            ("phase 5", []), ("phase 12", []), ("phaseout", []), ("multiphase 2", []),
        ]
        for (text, expected) in cases { XCTAssertEqual(phaseNumbers(text), expected, text) }
    }
}

final class FeaturizerTests: XCTestCase {
    func testSMILESTokens() throws {
        XCTAssertEqual(try tokenizeSMILES("CC(=O)Oc1ccccc1C(=O)O").count, 21)
        XCTAssertEqual(try tokenizeSMILES("[NH4+].[Cl-]"), ["[NH4+]", ".", "[Cl-]"])
        XCTAssertEqual(try tokenizeSMILES("BrCCl"), ["Br", "C", "Cl"])
        XCTAssertEqual(try tokenizeSMILES("C%12CC%12"), ["C", "%12", "C", "C", "%12"])
        XCTAssertEqual(try tokenizeSMILES("[C@@H]1(O)/C=C\\N"), ["[C@@H]", "1", "(", "O", ")", "/", "C", "=", "C", "\\", "N"])
        for bad in ["C[NH4", "CC)", "C(C", "C]", "CXC", "C%1"] {
            XCTAssertThrowsError(try tokenizeSMILES(bad), bad)
        }
    }

    func testCriteriaLayouts() {
        let bullets = """

                Inclusion Criteria:

                  -  Age >= 18 years.

                  -  Histological diagnosis of stage IV
                     non-small cell lung cancer

                Exclusion Criteria:

                  -  Pregnancy
        """
        XCTAssertEqual(splitCriteria(bullets), [
            Criterion(text: "Age >= 18 years.", inclusion: true),
            Criterion(text: "Histological diagnosis of stage IV non-small cell lung cancer", inclusion: true),
            Criterion(text: "Pregnancy", inclusion: false)])
        let numbered = "Inclusion criteria:\n1. Adults\n2) Informed consent\nExclusion criteria: prior therapy\n\n(3) HIV"
        XCTAssertEqual(splitCriteria(numbered), [
            Criterion(text: "Adults", inclusion: true), Criterion(text: "Informed consent", inclusion: true),
            Criterion(text: "prior therapy", inclusion: false), Criterion(text: "HIV", inclusion: false)])
        let plain = "Healthy volunteers between 18 and 45 years of age"
        XCTAssertEqual(splitCriteria(plain), [Criterion(text: plain, inclusion: true)])
        XCTAssertEqual(splitCriteria("Non-inclusion criteria:\n- smokers\n- See inclusion criteria above"), [
            Criterion(text: "smokers", inclusion: false), Criterion(text: "See inclusion criteria above", inclusion: false)])
        let long = (0..<50).map { "Sentence number \($0) is here." }.joined(separator: " ")
        let pieces = splitCriteria(long, maxWords: 40)
        XCTAssertGreaterThan(pieces.count, 1)
        XCTAssertEqual(pieces.map(\.text).joined(separator: " "), long, "splitting a long paragraph loses nothing")
    }

    func testPythonListLiterals() throws {
        XCTAssertEqual(try parsePythonStringList("[]"), [])
        XCTAssertEqual(try parsePythonStringList("['a', \"b's\", 'c\\'d']"), ["a", "b's", "c'd"])
        XCTAssertEqual(try parsePythonStringList("['x\\\\y', '\\u00b5g']"), ["x\\y", "µg"])
        XCTAssertEqual(try parsePythonStringList("[\"['D02.20', 'D02.21']\"]"), ["['D02.20', 'D02.21']"])
        for bad in ["", "['a'", "['a' 'b']", "[a]", "['a'] x", "['a\\u12']"] {
            XCTAssertThrowsError(try parsePythonStringList(bad), bad)
        }
    }

    func testVocabulary() throws {
        var v = Vocabulary()
        v.add("C"); v.add("c"); v.add("C")
        XCTAssertEqual(v.count, 4)
        XCTAssertEqual(v.id("C"), 2)
        XCTAssertEqual(v.id("never"), Vocabulary.unk)
        let round = try JSONDecoder().decode(Vocabulary.self, from: JSONEncoder().encode(v))
        XCTAssertEqual(round, v)
    }
}

/// Words of `text` not covered by `sentences` (matched in order) that are not list markers or heading words.
func leftoverAfterRemoving(_ sentences: [String], from text: String) -> [String] {
    var rest = Substring(text.split(whereSeparator: \.isWhitespace).joined(separator: " "))
    var leftover: [Substring] = []
    for s in sentences {
        guard let r = rest.range(of: s) else { return ["<sentence not found: \(s.prefix(50))>"] }
        leftover += rest[rest.startIndex..<r.lowerBound].split(separator: " ")
        rest = rest[r.upperBound...]
    }
    leftover += rest.split(separator: " ")
    // A heading is up to two words, then "inclusion"/"exclusion", then "criteria" (with its punctuation).
    let words = leftover.map(String.init)
    var headingPart = Set<Int>()
    for (i, w) in words.enumerated() {
        var lw = w.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "-("))
        if lw.hasPrefix("non-") { lw.removeFirst(4) }
        if (lw == "inclusion" || lw == "exclusion"), i + 1 < words.count, words[i + 1].lowercased().hasPrefix("criteria") {
            for k in max(0, i - 2)...(i + 1) { headingPart.insert(k) }
        }
    }
    return words.enumerated().filter { !headingPart.contains($0.offset) }.map(\.element).filter { w in
        if ["-", "*", "•", "·", "–"].contains(w) { return false }
        let core = w.trimmingCharacters(in: CharacterSet(charactersIn: "().")).trimmingCharacters(in: .decimalDigits)
        return !(core.isEmpty || (core.count == 1 && core.first!.isLowercase && (w.hasSuffix(")") || w.hasSuffix("."))))
    }
}
