import Foundation
import Training
@testable import TrialData
import XCTest

/// `inputCoverage`: what a run's trials lose to empty sides, truncation and an unknown SMILES vocabulary is counted
/// (a store without criterion text had trained a model that learns nothing, and fine-tuning on new drugs read every
/// token as <unk>, without a word).
final class InputCoverageTests: XCTestCase {
    func trial(_ id: String, sentences: Int, smiles: [[String]], icd: [[String]]) -> StoredTrial {
        StoredTrial(nctid: id, label: 1, phase: "phase 1", source: TrialSource(file: "x.csv", line: 2), icd: icd, smiles: smiles,
                    sentences: Array(0..<sentences), inclusion: Array(repeating: true, count: sentences))
    }

    func testCoverageCountsEmptySidesCutsAndUnknownTokens() throws {
        let seen = [trial("NCT1", sentences: 3, smiles: [["C", "C", "O"]], icd: [["E11.9"]]),
                    trial("NCT2", sentences: 12, smiles: [["C", "N"], ["C"]], icd: [])]
        let space = FeatureSpace(trials: seen, icdDepth: 4, maxSentences: 8, maxMolTokens: 2, maxMolecules: 4, maxCodes: 6)
        let fresh = seen + [trial("NCT3", sentences: 0, smiles: [["Br", "C"]], icd: [["C34.90"]])]
        let c = try XCTUnwrap(inputCoverage(fresh, space: space, what: "fine-tuning inputs"))
        XCTAssertEqual(c.line, "fine-tuning inputs: of 3 trials, 1 without criterion sentences, 1 without ICD codes, "
                       + "1 cut to their first 8 sentences (data.max_sentences), 2 cut to their first 2 SMILES tokens (data.max_mol_tokens), "
                       + "1 of their 8 SMILES tokens outside the model's vocabulary (read as <unk>)")
        XCTAssertNil(c.warning, "one of three without criteria is no cause for a warning")
        // Nothing to say: nil.
        let roomy = FeatureSpace(trials: seen, icdDepth: 4, maxSentences: 16, maxMolTokens: 8, maxMolecules: 4, maxCodes: 6)
        XCTAssertNil(inputCoverage([seen[0]], space: roomy, what: "x"))
        // Every side empty: the warning names each.
        let empty = try XCTUnwrap(inputCoverage([trial("NCT4", sentences: 0, smiles: [], icd: [[]])], space: roomy, what: "pretraining inputs"))
        XCTAssertEqual(empty.warning, "warning: pretraining inputs: 1 of the 1 have no criterion sentence (f_C is the same for them); none has a SMILES "
                       + "token; none has an ICD code: the model can learn little from those sides; check the criteria, smiless and icdcodes columns")
    }
}
