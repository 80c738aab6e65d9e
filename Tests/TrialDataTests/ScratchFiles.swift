import Foundation
import TestSupport
import TrialData

/// A fresh empty folder under the temporary directory for one test (`name` and the pid keep tests apart); the caller
/// removes it (`defer { try? FileManager.default.removeItem(atPath: dir) }`).
func scratchDirectory(_ name: String) throws -> String {
    let dir = NSTemporaryDirectory() + "cladmop-\(name)-\(getpid())"
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// A synthetic feature store of 60 trials at DIR/s.store (encoder width 384, the bundled ICD-10 tree: what a fine-tuning
/// on real CSVs can follow), and the arguments that pretrain configs/smoke.yaml on it into `run` (callers add theirs).
func writeSyntheticStore(dir: String) throws {
    let r = try mpirun(np: 1, executable: releaseOrDebugProduct("cladmop"), arguments: ["synth", "--trials", "60", "--dim", "384",
                       "--output", dir + "/s.store", "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"], timeout: 120)
    guard r.status == 0 else { throw NSError(domain: "synth", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.output]) }
}

func syntheticPretrainArguments(dir: String, run: String) -> [String] {
    ["pretrain", "--config", repoRoot + "/configs/smoke.yaml", "--run-dir", run, "--set", "data.synthetic=true",
     "--set", "data.feature_store=\(dir)/s.store", "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"]
}

/// The arguments of a small fine-tuning run on scratch CSVs in `dir`: configs/finetune-phase1.yaml with the repository's
/// encoder, ICD-10 tree and held-out ids, a store path that does not exist (the CSVs are featurized into the cache),
/// batch 8, no folds (the config's cross-fitting off: tests set the recipe they check), and `extra` settings (`key=value`).
func smallFinetuneSettings(dir: String, _ extra: [String]) -> [String] {
    ["--config", repoRoot + "/configs/finetune-phase1.yaml",
     "--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
     "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv",
     "--set", "data.exclude_file=\(repoRoot)/data/top/heldout_nctids.txt",
     "--set", "data.feature_store=\(dir)/features/none.store", "--set", "finetune.batch=8", "--set", "finetune.folds=0"]
        + extra.flatMap { ["--set", $0] }
}

/// What `writeCSVSubset` does to the label column: keep it, set every row's field to a text, leave the column out, or
/// flip one written data row's 0/1 label.
enum LabelColumnEdit { case keep, set(String), drop, flip(row: Int) }

/// Writes the header and the given data rows of a bundled TOP CSV to `path` (RFC 4180 quoting); `label`: only rows
/// with that label; `labelColumn`: see `LabelColumnEdit`.
func writeCSVSubset(from source: String, rows: Range<Int>, to path: String, label: Int? = nil, labelColumn: LabelColumnEdit = .keep) throws {
    let records = try readCSV(path: source)
    let column = records[0].fields.firstIndex(of: "label")!
    let chosen = [records[0]] + records.dropFirst().enumerated().filter { rows.contains($0.offset) }.map(\.element)
        .filter { label == nil || $0.fields[column] == String(label!) }
    let edited: [[String]] = chosen.enumerated().map { i, r in
        var fields = r.fields
        switch labelColumn {
        case .keep: break
        case .set(let text): if i > 0 { fields[column] = text }
        case .drop: fields.remove(at: column)
        case .flip(let row): if i == row + 1 { fields[column] = fields[column] == "1" ? "0" : "1" }
        }
        return fields
    }
    let lines = edited.map { $0.map { f in
        f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
    }.joined(separator: ",") }
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
}

/// Fine-tuning from scratch (`--pretrained none`, 2 ranks) on 24 trials of phase_I_train.csv (`dir`/train.csv) and the
/// first `validRows` of phase_I_valid.csv (`dir`/valid.csv), written into a fresh scratch folder; `sets`:
/// `smallFinetuneSettings` with the given settings. The caller removes `dir`.
struct SmallFinetuning {
    let dir: String, cladmop: String, sets: [String]

    init(_ name: String, _ settings: [String], validRows: Int = 12) throws {
        dir = try scratchDirectory(name)
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_train.csv", rows: 0..<24, to: dir + "/train.csv")
        try writeCSVSubset(from: repoRoot + "/data/top/phase_I_valid.csv", rows: 0..<validRows, to: dir + "/valid.csv")
        cladmop = releaseOrDebugProduct("cladmop")
        sets = smallFinetuneSettings(dir: dir, settings)
    }

    /// `cladmop finetune` into `dir`/`run` with `extra` arguments after the settings.
    func finetune(_ extra: [String], _ run: String) throws -> (status: Int32, output: String, seconds: Double) {
        try mpirun(np: 2, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv",
                                                          "--valid", dir + "/valid.csv", "--run-dir", dir + "/" + run] + sets + extra,
                   timeout: 600)
    }
}
