import ArgumentParser
import Communication
import Config
import Foundation
import Model
import NN
import TextEncoder
import Training
import TrialData

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "PEFT fine-tuning (LoRA + prediction head) of a pretrained checkpoint on a labelled TOP file, selected on a validation file.")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Pretraining checkpoint (.safetensors, .json or run directory), or 'none' for the no-pretraining ablation.")
    var pretrained: String
    @Option(help: "Labelled TOP CSV to fine-tune on.") var train: String
    @Option(help: "Labelled TOP CSV for model selection.") var valid: String
    @Option(help: "Run directory: checkpoints/, best.json, metrics.jsonl.") var runDir: String

    func run() throws {
        runJob { comm in
            let config = try options.load()
            try prepareRunDirectory(runDir, config: config, comm: comm)
            let hierarchy = try ICD10Hierarchy(path: config.string("data.icd_hierarchy"))
            let store = try storeContaining([train, valid], config: config, hierarchy: hierarchy, comm: comm)
            let tuner = try Finetuner(config: config, comm: comm, pretrained: pretrained == "none" ? nil : pretrained, trainFile: train,
                                      validFile: valid, runDir: runDir, store: store, hierarchy: hierarchy, log: log)
            try tuner.run()
        }
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "F1 / PR-AUC / ROC-AUC / accuracy of a checkpoint on a labelled TOP CSV (bootstrap: 10 resamples of 80 %). A pretraining checkpoint is scored zero-shot (pair-matching score).")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Fine-tuned or pretraining checkpoint (.safetensors, .json or run directory).") var checkpoint: String
    @Option(help: "Labelled TOP-format CSV (featurized on the fly when the feature store does not hold it).") var data: String
    @Option(help: "Write the metrics as one JSON object to this file.") var json: String?
    @Option(help: "Write ROC and precision-recall curves (roc.svg, pr.svg) into this folder.") var plots: String?
    @Option(help: "Write a markdown report (table in the layout of the paper's Table 2, with the paper's figures beside ours).")
    var report: String?
    @Option(help: "Trial phase (1, 2, 3) whose published figures the report shows.") var phase: Int?

    func run() throws {
        runJob { comm in
            let config = try options.load()
            let (trials, scores, threshold, trainingSets) = try scoreCSV(checkpoint: checkpoint, csv: data, config: config, comm: comm)
            guard comm.isRoot else { return }
            let labels = trials.map(\.label)
            var report = Metrics.report(scores, labels, threshold: threshold)
            report["data"] = data
            report["checkpoint"] = checkpoint
            if let sets = trainingSets {
                let known = Set(sets)
                let idx = trials.indices.filter { !known.contains(diseaseSet(trials[$0])) }
                report["new_diseases"] = Metrics.report(idx.map { scores[$0] }, idx.map { labels[$0] }, threshold: threshold)
            } else {
                report["zero_shot"] = true
            }
            printMetricsTable(report, title: "\(data) (\(trials.count) trials)")
            if let plots { try writeCurves(scores: scores, labels: labels, dir: plots) }
            if let reportPath = self.report { try writeOutcomeReport(report, path: reportPath, phase: phase, data: data, checkpoint: checkpoint) }
            if let json {
                let d = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
                try writeFileAtomically(json) { try $0.write(contentsOf: d) }
            }
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Success probability of every trial of a TOP CSV -> CSV (nctid,probability).")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Fine-tuned checkpoint (.safetensors, .json or run directory).") var checkpoint: String
    @Option(help: "TOP-format CSV (the label column may be 0 or 1; it is not used).") var data: String
    @Option(help: "Output CSV.") var output: String

    func run() throws {
        runJob { comm in
            let config = try options.load()
            let (trials, scores, _, _) = try scoreCSV(checkpoint: checkpoint, csv: data, config: config, comm: comm)
            guard comm.isRoot else { return }
            var text = "nctid,probability\n"
            for (t, s) in zip(trials, scores) { text += "\(t.nctid),\(String(format: "%.6f", s))\n" }
            try writeFileAtomically(output) { try $0.write(contentsOf: Data(text.utf8)) }
            log("predict: \(trials.count) trials -> \(output)")
        }
    }
}

/// A feature store holding every file of `csvs`: the configured store when it has them (same content),
/// else a cache store in data/features/cache/ built now (under mpirun the ranks share the encoding).
func storeContaining(_ csvs: [String], config: Config, hierarchy: ICD10Hierarchy, comm: Communicator) throws -> FeatureStore {
    let main = config.string("data.feature_store")
    let identity = try BertEncoder.identity(modelDir: config.string("encoder.model_dir"))
    let wanted = try currentStoreIdentity(paths: csvs, encoderIdentity: identity, maxTokens: config.int("encoder.max_tokens"))
    func holds(_ s: FeatureStore) -> Bool {
        s.identity.encoder == identity && wanted.sources.allSatisfy { s.identity.sources[$0.key] == $0.value }
    }
    if let s = try? FeatureStore(path: main), holds(s) { return s }
    let key = String(Data(wanted.sources.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined().utf8).withUnsafeBytes { checksum64($0) }, radix: 16)
    let cache = URL(fileURLWithPath: main).deletingLastPathComponent().path + "/cache/\(key).store"
    if let s = try? FeatureStore(path: cache), holds(s) { return s }
    if comm.isRoot { log("featurize: \(csvs.joined(separator: ", ")) not in \(main); featurizing into \(cache)") }
    _ = try featurize(comm: comm, paths: csvs, output: cache,
                      makeEncoder: { try BertEncoder(modelDir: config.string("encoder.model_dir"), maxLength: config.int("encoder.max_tokens")) },
                      hierarchy: hierarchy, skipBadRows: config.bool("data.skip_bad_rows"), batchTokens: config.int("encoder.batch_tokens"),
                      log: { if comm.isRoot { log($0) } })
    return try FeatureStore(path: cache)
}

/// Scores every row of `csv` with a checkpoint: fine-tuned -> head probability; pretraining -> zero-shot
/// sigmoid(s cos(f_C, f_DM)). Returns the rows, scores, decision threshold and the training disease sets.
func scoreCSV(checkpoint: String, csv: String, config: Config, comm: Communicator)
    throws -> ([StoredTrial], [Double], Double, [String]?) {
    let jsonPath = try resolveCheckpointJSON(checkpoint)
    let (meta, tensors) = try Checkpoints.load(jsonPath: jsonPath)
    let hierarchy = try ICD10Hierarchy(path: config.string("data.icd_hierarchy"))
    let store = try storeContaining([csv], config: config, hierarchy: hierarchy, comm: comm)
    let name = URL(fileURLWithPath: csv).lastPathComponent
    let trials = store.trials.filter { $0.source.hasPrefix(name + ":") }
    guard store.dim == meta.model.encoderDim else {
        throw InputError(file: store.path, "sentence vectors have width \(store.dim), the checkpoint expects \(meta.model.encoderDim)")
    }
    let builder = BatchBuilder(store: store, hierarchy: hierarchy, space: meta.features)
    let arena = ActivationArena()
    if meta.kind == "finetune" {
        guard let specText = meta.extra["finetune"], let spec = try? JSONDecoder().decode(FinetuneSpec.self, from: Data(specText.utf8)) else {
            throw InputError(file: jsonPath, "fine-tuning checkpoint without its head/LoRA description")
        }
        let outcome = OutcomeModel(model: meta.model, space: meta.features, spec: spec, seed: 0, loraLR: 0, headLR: 0, weightDecay: 0, trainBase: false)
        if let pre = meta.pretrained {
            let (preMeta, preTensors) = try Checkpoints.load(jsonPath: pre)
            guard preMeta.tensorsChecksum == meta.pretrainedChecksum else {
                throw InputError(file: pre, "pretrained checkpoint changed since fine-tuning (checksum \(preMeta.tensorsChecksum), recorded \(meta.pretrainedChecksum ?? "-"))")
            }
            try Checkpoints.restore(preTensors, into: outcome.params, optimizer: nil, only: { $0.group == 0 })
        }
        try Checkpoints.restore(tensors, into: outcome.params, optimizer: nil, only: { tensors.tensors[$0.name] != nil })
        return (trials, scoreTrials(trials, outcome: outcome, builder: builder, comm: comm, arena: arena), spec.threshold, spec.trainingDiseaseSets)
    }
    // Zero-shot: the pair-matching score of the pretrained model.
    let params = ParameterArena(seed: 0)
    let model = CLaDMoP(meta.model, params: params)
    params.finalize()
    try Checkpoints.restore(tensors, into: params, optimizer: nil)
    let e = meta.model.encoderDim
    let mine = (comm.rank * trials.count / comm.size)..<((comm.rank + 1) * trials.count / comm.size)
    var local: [Float] = []
    var start = mine.lowerBound
    while start < mine.upperBound {
        let end = min(start + 64, mine.upperBound)
        arena.reset()
        let batch = builder.batch(Array(trials[start..<end]))
        let state = model.forward(batch, arena: arena)
        let fC = arena.allocate(batch.count * e)
        builder.criteriaEmbedding(batch, into: fC)
        let s = expf(params.value(model.logScale)[0])
        for i in 0..<batch.count {
            var dot: Float = 0, na: Float = 0, nb: Float = 0
            for k in 0..<e { let a = fC[i * e + k], b = state.fDM![i * e + k]; dot += a * b; na += a * a; nb += b * b }
            local.append(sigmoid(s * dot / max((na * nb).squareRoot(), 1e-12)))
        }
        start = end
    }
    let scores = gatherScores(local, total: trials.count, comm: comm)
    return (trials, scores, Metrics.bestF1Threshold(scores, trials.map(\.label)), nil)
}

func printMetricsTable(_ r: [String: Any], title: String) {
    func cell(_ d: [String: Any], _ k: String) -> String {
        guard let m = d[k] as? [String: Any], let mean = m["mean"] as? Double, let std = m["std"] as? Double else { return "   n/a" }
        return String(format: "%.4f +- %.4f", mean, std)
    }
    log(title)
    log("| subset | n | PR-AUC | ROC-AUC | F1 (0.5) | F1 (thr) | accuracy |")
    log("|---|---|---|---|---|---|---|")
    var rows: [(String, [String: Any])] = [("all", r)]
    if let nd = r["new_diseases"] as? [String: Any] { rows.append(("new diseases", nd)) }
    for (name, d) in rows {
        log("| \(name) | \(d["n"] ?? 0) | \(cell(d, "pr_auc")) | \(cell(d, "roc_auc")) | \(cell(d, "f1")) | \(cell(d, "f1_at_threshold")) | \(cell(d, "accuracy")) |")
    }
}

/// ROC and precision-recall curves of `scores` as SVG files.
func writeCurves(scores: [Double], labels: [Int], dir: String) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let order = scores.indices.sorted { scores[$0] > scores[$1] }
    let pos = Double(labels.filter { $0 == 1 }.count), neg = Double(labels.count) - pos
    var tp = 0.0, fp = 0.0
    var roc: [(Double, Double)] = [(0, 0)], pr: [(Double, Double)] = []
    for i in order {
        if labels[i] == 1 { tp += 1 } else { fp += 1 }
        roc.append((neg > 0 ? fp / neg : 0, pos > 0 ? tp / pos : 0))
        pr.append((pos > 0 ? tp / pos : 0, tp / (tp + fp)))
    }
    try svgLinePlot(title: String(format: "ROC (AUC %.3f)", Metrics.rocAUC(scores, labels)), xLabel: "false positive rate",
                    yLabel: "true positive rate", series: [("model", roc), ("chance", [(0, 0), (1, 1)])])
        .write(toFile: dir + "/roc.svg", atomically: true, encoding: .utf8)
    try svgLinePlot(title: String(format: "Precision-recall (AP %.3f)", Metrics.averagePrecision(scores, labels)), xLabel: "recall",
                    yLabel: "precision", series: [("model", pr), ("base rate", [(0, pos / max(Double(labels.count), 1)), (1, pos / max(Double(labels.count), 1))])])
        .write(toFile: dir + "/pr.svg", atomically: true, encoding: .utf8)
}

/// The paper's Table 2 (TOP *test* sets, mean +- std over 10 bootstraps): (method, F1, PR-AUC, ROC-AUC) per phase.
let paperTable2: [Int: [(String, String, String, String)]] = [
    1: [("HINT", ".604 ± .009", ".581 ± .021", ".575 ± .021"), ("MEXA-CTP", ".713 ± .027", ".605 ± .014", ".593 ± .012"),
        ("CLaDMoP", ".713 ± .019", ".680 ± .016", ".642 ± .015")],
    2: [("HINT", ".635 ± .010", ".608 ± .011", ".623 ± .012"), ("MEXA-CTP", ".695 ± .008", ".635 ± .015", ".638 ± .005"),
        ("CLaDMoP", ".685 ± .015", ".683 ± .012", ".647 ± .018")],
    3: [("HINT", ".814 ± .013", ".603 ± .014", ".685 ± .023"), ("MEXA-CTP", ".857 ± .007", ".771 ± .016", ".693 ± .025"),
        ("CLaDMoP", ".861 ± .014", ".860 ± .011", ".702 ± .018")],
]

func writeOutcomeReport(_ r: [String: Any], path: String, phase: Int?, data: String, checkpoint: String) throws {
    func cell(_ d: [String: Any], _ k: String) -> String {
        guard let m = d[k] as? [String: Any], let mean = m["mean"] as? Double, let std = m["std"] as? Double else { return "n/a" }
        return String(format: "%.3f ± %.3f", mean, std)
    }
    var md = "# Outcome prediction\(phase.map { ", phase \($0)" } ?? "")\n\n"
    md += "Checkpoint `\(checkpoint)`, evaluated on `\(data)` (\(r["n"] ?? 0) trials, \(r["positives"] ?? 0) successful); "
    md += "mean ± std over 10 resamples of 80 % of the rows. F1 at 0.5; F1 (thr) at the threshold chosen on validation.\n\n"
    md += "| Method | F1 | F1 (thr) | PR-AUC | ROC-AUC | ACC |\n|---|---|---|---|---|---|\n"
    md += "| **this run** | \(cell(r, "f1")) | \(cell(r, "f1_at_threshold")) | \(cell(r, "pr_auc")) | \(cell(r, "roc_auc")) | \(cell(r, "accuracy")) |\n"
    if let nd = r["new_diseases"] as? [String: Any] {
        md += "| this run, new diseases (n = \(nd["n"] ?? 0)) | \(cell(nd, "f1")) | \(cell(nd, "f1_at_threshold")) | \(cell(nd, "pr_auc")) | \(cell(nd, "roc_auc")) | \(cell(nd, "accuracy")) |\n"
    }
    if let phase, let rows = paperTable2[phase] {
        for (m, f1, pr, roc) in rows { md += "| \(m) (published, paper's Table 2) | \(f1) | | \(pr) | \(roc) | |\n" }
        md += "\nThe published rows are the paper's figures on the TOP *test* split, which is held out here "
        md += "(`data/top/heldout_nctids.txt`); ours are on the file above, with a much smaller model and pretraining "
        md += "budget (configs/pretrain.yaml). They are context, not a like-for-like comparison.\n"
    }
    md += "\n![ROC](roc.svg)\n\n![PR](pr.svg)\n"
    try md.write(toFile: path, atomically: true, encoding: .utf8)
}

struct Baseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Logistic-regression baseline (mean criteria vector, bag of ICD categories, bag of SMILES tokens): train on one TOP CSV, evaluate on another.")

    @OptionGroup var options: ConfigOptions
    @Option(help: "Labelled TOP CSV to fit on.") var train: String
    @Option(help: "Labelled TOP CSV to evaluate on.") var data: String
    @Option(help: "Write the metrics as one JSON object to this file.") var json: String?

    func run() throws {
        runJob { comm in
            let config = try options.load()
            let hierarchy = try ICD10Hierarchy(path: config.string("data.icd_hierarchy"))
            let store = try storeContaining([train, data], config: config, hierarchy: hierarchy, comm: comm)
            guard comm.isRoot else { return }
            func rows(_ f: String) -> [StoredTrial] { store.trials.filter { $0.source.hasPrefix(URL(fileURLWithPath: f).lastPathComponent + ":") } }
            let model = LogisticBaseline(train: rows(train), store: store, hierarchy: hierarchy)
            let test = rows(data)
            let scores = model.predict(test)
            var report = Metrics.report(scores, test.map(\.label), threshold: 0.5)
            report["method"] = "logistic regression"
            printMetricsTable(report, title: "logistic-regression baseline on \(data) (\(test.count) trials)")
            if let json {
                let d = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
                try writeFileAtomically(json) { try $0.write(contentsOf: d) }
            }
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Markdown table of several evaluation JSON files (cladmop evaluate/baseline --json).")

    @Option(name: .customLong("eval"), help: ArgumentHelp("LABEL=FILE.json (repeatable, in table order).", valueName: "label=file"))
    var evals: [String] = []
    @Option(help: "Markdown file to write (printed as well).") var output: String?

    func run() throws {
        runJob { comm in
            var md = "| method | n | F1 (0.5) | PR-AUC | ROC-AUC | accuracy |\n|---|---|---|---|---|---|\n"
            for e in evals {
                guard let eq = e.firstIndex(of: "=") else { throw InputError("--eval \(e): expected LABEL=FILE.json") }
                let label = String(e[..<eq]), file = String(e[e.index(after: eq)...])
                guard let d = FileManager.default.contents(atPath: file),
                      let r = (try? JSONSerialization.jsonObject(with: d)) as? [String: Any] else {
                    throw InputError(file: file, "not an evaluation JSON (cladmop evaluate --json)")
                }
                func cell(_ k: String) -> String {
                    guard let m = r[k] as? [String: Any], let mean = m["mean"] as? Double, let std = m["std"] as? Double else { return "n/a" }
                    return String(format: "%.3f ± %.3f", mean, std)
                }
                md += "| \(label) | \(r["n"] ?? "") | \(cell("f1")) | \(cell("pr_auc")) | \(cell("roc_auc")) | \(cell("accuracy")) |\n"
            }
            guard comm.isRoot else { return }
            print(md, terminator: "")
            if let output { try writeFileAtomically(output) { try $0.write(contentsOf: Data(md.utf8)) } }
        }
    }
}
