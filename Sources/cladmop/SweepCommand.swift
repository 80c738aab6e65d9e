import Support
import ArgumentParser
import Config
import Foundation
import NN
import Training

/// `cladmop sweep-report --out DIR`: collects the points a batch-size sweep (Launch/sweep-batch) ran into
/// DIR/sweep.csv, DIR/sweep.svg and DIR/summary.md.
struct SweepReport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep-report",
        abstract: "Collect a batch-size sweep's runs (DIR/points.tsv: global_batch, lr, exit status, run dir) into sweep.csv, sweep.svg and summary.md.")

    @Option(help: "The sweep's output folder.")
    var out: String

    @Option(help: "Title of the plot and the summary (one line).")
    var title = "Batch size vs validation loss"

    func validate() throws {
        guard !out.isEmpty else { throw ValidationError("--out is empty; expected the sweep's folder") }
        // A line break would end summary.md's heading and the plot's title early.
        guard !title.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == "\u{2028}" || $0 == "\u{2029}" }) else {
            throw ValidationError("--title \(title.debugDescription): holds a control character (a line break or tab); expected one line of text")
        }
    }

    func run() throws {
        runJob { comm in
            guard comm.isRoot else { return }     // under mpirun: one report, by rank 0
            try report()
        }
    }

    func report() throws {
        let listing = out + "/points.tsv"
        let text = try readTextLines(listing, what: "sweep's list of points (written by Launch/sweep-batch)", limit: 1 << 24)
        var lineOf: [Int: Int] = [:], runs: [(line: Int, batch: Int, lr: Double, status: Int, dir: String)] = []
        for (i, line) in text.lines.enumerated() {      // LF, CR LF or CR
            if line.isEmpty { continue }
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            func bad(_ what: String) -> InputError { InputError(file: listing, line: i + 1, what) }
            guard f.count == 4 else { throw bad("expected global_batch<TAB>lr<TAB>exit status<TAB>run dir, found \(f.count) field(s)") }
            guard let b = Int(f[0]), (2...1_000_000).contains(b) else {
                throw bad("global_batch \"\(f[0].prefix(40))\": expected an integer from 2 to 1000000 (train.global_batch)")
            }
            // Float(lr).isNormal: a positive lr within 32-bit floats, as optimizer.lr (a subnormal Double is 0 here).
            guard let lr = Double(f[1]), lr > 0, Float(lr).isNormal else {
                throw bad("lr \"\(f[1].prefix(40))\": expected a positive number within 32-bit floats, 1.2e-38 to 3.4e38 (optimizer.lr)")
            }
            guard let status = Int(f[2]), (0...255).contains(status) else { throw bad("exit status \"\(f[2].prefix(40))\": expected an integer 0-255") }
            guard !f[3].isEmpty else { throw bad("the run dir is empty") }
            if let first = lineOf[b] { throw bad("global_batch \(b) is listed twice (also line \(first)); one run per batch size") }
            lineOf[b] = i + 1
            // A relative run dir is the sweep folder's (Launch/sweep-batch writes runs/bN); a finished run written
            // relative to the directory the sweep ran in (listings of earlier sweeps) is found there.
            var runDir = f[3]
            if !runDir.hasPrefix("/") {
                let inSweep = out + "/" + runDir
                if status != 0 || FileManager.default.fileExists(atPath: inSweep) || !FileManager.default.fileExists(atPath: runDir) { runDir = inSweep }
            }
            runs.append((line: i + 1, batch: b, lr: lr, status: status, dir: runDir))
        }
        // A run that ended well must have left its record: a missing one is a wrong path, not a failed run (the report
        // would call it failed and replace a good one). Checked for every line before any run's metrics are read.
        for r in runs where r.status == 0 {
            var st = stat()
            let metrics = r.dir + "/metrics.jsonl"
            guard stat(metrics, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, access(metrics, R_OK) == 0 else {
                throw InputError(file: listing, line: r.line, "the run of global_batch \(r.batch) exited with status 0 but \(metrics) cannot be read; expected the run dir relative to \(out) (or absolute)")
            }
            // The line's batch and rate must be the run's own (its resolved config.yaml): a line pointing at another
            // point's run would put that run's figures under this batch.
            // A run written by an older cladmop may hold keys this one no longer reads: then the check is skipped, said;
            // a run without its config.yaml is not one that pretrain wrote.
            var cst = stat()
            guard lstat(r.dir + "/config.yaml", &cst) == 0 else {
                throw InputError(file: listing, line: r.line, "the run of global_batch \(r.batch) exited with status 0 but \(r.dir)/config.yaml is missing; expected the run folder pretrain wrote (its resolved config beside metrics.jsonl)")
            }
            let spec: RunSpec
            do { spec = try RunSpec(Config(file: r.dir + "/config.yaml")) } catch {
                standardErrorWrite(Data("warning: \(listing):\(r.line): cannot check global_batch and lr against \(r.dir)/config.yaml: \(error)\n".utf8))
                continue
            }
            if spec.train.globalBatch != r.batch {
                throw InputError(file: listing, line: r.line, "global_batch \(r.batch), but its run \(r.dir) trained with train.global_batch \(spec.train.globalBatch) (its config.yaml)")
            }
            let rate = spec.optimizer.lr
            if abs(rate - r.lr) > 1e-9 * max(abs(rate), abs(r.lr)) {
                throw InputError(file: listing, line: r.line, "lr \(r.lr), but its run \(r.dir) trained with optimizer.lr \(rate) (its config.yaml)")
            }
        }
        // What the report reads of a finished run's evaluations, checked before it is read: a validation loss is an
        // InfoNCE loss, at least 0 and at most 2 x logit scale (<= 100) + log(batch), far below 1e6; a step is a count
        // whose product with a global batch (at most 1e6) fits an Int (a step of 1e18 had trapped the samples-to-best
        // product); accuracies are fractions. A run whose evaluations hold other values, or no loss at all, is not what pretrain wrote.
        for r in runs where r.status == 0 {
            let file = r.dir + "/metrics.jsonl"
            func bad(_ what: String) -> InputError { InputError(file: file, "\(what) (global_batch \(r.batch), \(listing):\(r.line))") }
            do { try MetricsLog.requireWellFormed(file, types: ["eval": EvalRecord.self, "summary": SummaryRecord.self]) }
            catch let e as InputError { throw InputError(e.description + " (global_batch \(r.batch), \(listing):\(r.line)); this run's log is damaged: its point cannot be reported as it is") }
            let evals = MetricsLog.records(of: "eval", in: file, as: EvalRecord.self)
            for e in evals {
                guard (0...9_000_000_000_000).contains(e.step) else { throw bad("an eval record's step \(e.step): expected a step count from 0 to 9e12") }
                guard e.epoch >= 0 && e.epoch <= 1e9 else { throw bad("an eval record's epoch \(e.epoch): expected a number of epochs from 0 to 1e9") }
                if let loss = e.valLoss, !(loss >= 0 && loss < 1e6) {
                    throw bad("val_loss \(loss): expected a loss in [0, 1e6) (an InfoNCE loss)")
                }
                for (key, value) in [("val_top1_c2dm", e.valTop1C2dm), ("chance_top1", e.chanceTop1)] {
                    if let value, !(value >= 0 && value <= 1) { throw bad("\(key) \(value): expected a fraction in [0, 1]") }
                }
            }
            let summaries = MetricsLog.records(of: "summary", in: file, as: SummaryRecord.self)
            for summary in summaries {
                for (key, value) in [("samples_per_second", summary.samplesPerSecond), ("peak_rss_mb", summary.peakRssMb)] {
                    guard value >= 0 && value < 1e15 else { throw bad("the summary's \(key) \(value): expected a non-negative number below 1e15") }
                }
            }
            if !evals.isEmpty && !summaries.isEmpty && !evals.contains(where: { $0.valLoss != nil }) {
                throw bad("no eval record holds a val_loss (null in every one); expected the validation loss of each evaluation")
            }
        }
        let points = runs.map { SweepPoint(globalBatch: $0.batch, learningRate: $0.lr, exitStatus: $0.status, runDir: $0.dir) }
        // Exit status 0 without an evaluation and a summary: the run stopped before its end (killed, or its log cut).
        for (r, p) in zip(runs, points) where r.status == 0 && p.status != "ok" {
            standardErrorWrite(Data(("warning: \(listing):\(r.line): the run of global_batch \(r.batch) exited with status 0 but \(r.dir)/metrics.jsonl "
                + "holds no evaluation and summary (a run stopped before its end?); reported as failed\n").utf8))
        }
        // The batches the sweep was asked for (Launch/sweep-batch writes DIR/batches.txt before its first point): those
        // without a line in points.tsv did not finish (the sweep was stopped before or during them), and the report says so.
        let requested = try requestedBatches()
        guard !points.isEmpty else {
            throw InputError(file: listing, "lists no point; expected one line per batch size (global_batch<TAB>lr<TAB>exit status<TAB>run dir)"
                             + (requested.map { ": none of the sweep's \($0.count) batches (batches.txt) finished, so there is nothing to report" } ?? ""))
        }
        if let requested {
            for r in runs where !requested.contains(r.batch) {
                throw InputError(file: listing, line: r.line, "global_batch \(r.batch) is not one of the sweep's batches (\(out)/batches.txt: \(requested.map(String.init).joined(separator: ", ")))")
            }
        }
        let notRun = (requested ?? []).filter { b in !runs.contains { $0.batch == b } }.sorted()
        try writeSweepReport(dir: out, points: points.sorted { $0.globalBatch < $1.globalBatch }, title: title, notRun: notRun)
        print("sweep: \(points.count) point(s), \(points.filter { $0.status == "ok" }.count) ok"
              + (notRun.isEmpty ? "" : ", \(notRun.count) of the \(requested!.count) batches not run (\(notRun.map(String.init).joined(separator: ", ")): the sweep stopped before them or during the first)")
              + " -> \(out)/sweep.csv, sweep.svg, summary.md")
    }

    /// DIR/batches.txt's batch sizes (one integer of at least 2 per line, each once; blank lines and CR LF allowed), or
    /// nil without the file (sweeps written before it).
    func requestedBatches() throws -> [Int]? {
        let file = out + "/batches.txt"
        var st = stat()
        guard lstat(file, &st) == 0 || errno != ENOENT else { return nil }     // another error: said by the read below
        let text = try readTextLines(file, what: "sweep's batch sizes (written by Launch/sweep-batch)", limit: 1 << 20)
        var batches: [Int] = []
        for (i, line) in text.lines.enumerated() {
            let field = line.trimmingCharacters(in: .whitespaces)
            if field.isEmpty { continue }
            guard let b = Int(field), b >= 2 else {
                throw InputError(file: file, line: i + 1, "\"\(field.prefix(40))\": expected a global batch size, an integer of at least 2")
            }
            guard !batches.contains(b) else { throw InputError(file: file, line: i + 1, "global batch \(b) is listed twice; one run per batch size") }
            batches.append(b)
        }
        guard !batches.isEmpty else { throw InputError(file: file, "lists no batch size; expected one per line") }
        return batches
    }
}
