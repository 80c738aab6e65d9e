import Communication
import Config
import Foundation
import NN
import Support

/// `cladmop finetune --resume auto`: an ensemble run (seeds or cross-fitted folds, `finetune.epoch_selection: member`)
/// killed part way keeps the members that finished (their best.json written after their checkpoint) and trains the
/// others. A member's training depends only on its seed and its trials, so the resumed run writes what an
/// uninterrupted one writes (on as many ranks: scores round by the batches they are computed in). Pooled epoch
/// selection keeps every epoch of every member in memory only, and a single model saves nothing before its end: both
/// start again from the first epoch.
extension Finetuner {
    /// A finished member of the interrupted run: what the ensemble needs of it (its log, the epoch it kept and that
    /// epoch's scores of its selecting trials, recomputed from its checkpoint) and its best.json.
    struct ResumedMember {
        var training: MemberTraining
        var selection: FinetuneSelection
    }

    /// Whether the run's configuration keeps members before its end (an ensemble selecting each member's own epoch).
    var keepsFinishedMembers: Bool {
        (spec.finetune.ensemble > 1 || !partitions.isEmpty) && spec.finetune.epochSelection == .member
    }

    /// Reads and checks the finished members of the run being resumed (every rank, from the run folder: it must be the
    /// same folder on every node; best.json and the checkpoint's tensors are agreed). A member is kept only if it is what
    /// this command would train: the same trials (trained or selected on) with the same contents (best.json's
    /// `training_checksum`) under the same file names (`head.trainFile`, `head.validFile`, which scoring compares across
    /// members), fold, pretrained checkpoint, store, ICD-10 tree and settings (finetune.* but threshold_confidence,
    /// train.grad_clip, train.precision as computed, model.*, loss.*, data.* but the paths, whose contents the rest
    /// compares), and its best.json says what its log says; anything else is refused, exit 2, naming the member's
    /// checkpoint. Called before the run folder is written (`prepareRunDirectory`).
    public func planResume() throws {
        resuming = true
        try requireLayoutOfThisRun()
        guard keepsFinishedMembers else { return }
        let f = spec.finetune
        let dirs = (0..<memberCount).map { runDir + "/members/\($0 + 1)" }
        // A member numbered beyond this run's (another finetune.ensemble or finetune.folds) would stay beside it.
        let beyond = ((try? FileManager.default.contentsOfDirectory(atPath: runDir + "/members")) ?? []).compactMap(Int.init).filter { $0 > memberCount }.sorted()
        if let first = beyond.first {
            throw InputError(file: runDir + "/members/\(first)", "is a member of the interrupted run, which had more members than this command trains (\(memberCount): finetune.ensemble and finetune.folds); resume with the settings the run was started with, or replace it with --overwrite")
        }
        let finished = dirs.indices.filter { FileManager.default.fileExists(atPath: dirs[$0] + "/best.json") }
        var bests: [Int: Data] = [:]
        for m in finished { bests[m] = try readRegularFile(dirs[m] + "/best.json", what: "best-checkpoint pointer (best.json)", limit: 1 << 20) }
        let said = finished.map { "\($0 + 1): \(checksumHex(bests[$0]!))" }
        try requireAgreement([("the finished members in \(runDir)/members", said.isEmpty ? "none" : said.joined(separator: ", "))], comm: comm,
                             what: "run folders (--resume auto: --run-dir must name one folder, shared by every node, with the same members)")
        let precision = agreedTrainingPrecision(spec.train.precision, comm: comm)
        for m in finished {
            let (_, _, seed, memberTrain, memberValid) = memberSetup(m)
            let bestPath = dirs[m] + "/best.json"
            _ = try BestJSON.read(bestPath)      // every key it holds checked, errors naming the key
            let selection: FinetuneSelection
            do { selection = try JSONDecoder().decode(FinetuneSelection.self, from: bests[m]!) }
            catch let error as InputError { throw error }
            catch { throw InputError(file: bestPath, "is not a fine-tuned member's best.json (expected the keys checkpoint, epoch, select_metric, valid, threshold)") }
            let expected = "checkpoints/" + Checkpoints.name(step: selection.epoch) + ".safetensors"
            guard (1...f.epochs).contains(selection.epoch), selection.checkpoint == expected else {
                throw InputError(file: bestPath, "names \(selection.checkpoint) (epoch \(selection.epoch)); a member keeps checkpoints/step-N.safetensors of an epoch N from 1 to finetune.epochs = \(f.epochs)")
            }
            let jsonPath = dirs[m] + "/checkpoints/" + Checkpoints.name(step: selection.epoch) + ".json"
            let (meta, tensors) = try Checkpoints.load(jsonPath: jsonPath)
            try requireAgreement([("member \(m + 1)'s checkpoint \(jsonPath)", "tensors \(meta.tensorsChecksum)")], comm: comm,
                                 what: "run folders (--resume auto: --run-dir must name one folder, shared by every node, with the same members)")
            let model = m == 0 ? outcome : try Self.member(model: outcome.model.config, space: outcome.space, spec: outcome.spec,
                                                             finetune: f, seed: seed, pretrained: pretrainedTensors)
            var problems = resumeProblems(meta, member: m, trained: trainedTrials(train: memberTrain, valid: memberValid),
                                          precision: precision, model: model)
            let learnt = trainingChecksum(train: memberTrain, valid: memberValid)
            if selection.trainingChecksum == nil {
                problems.append("its best.json records no training_checksum (an earlier cladmop wrote it), so what it learnt from cannot be compared")
            } else if selection.trainingChecksum != learnt, problems.isEmpty {
                problems.append("what it trained or selected on differs in content (training_checksum \(selection.trainingChecksum!) in its best.json, "
                                + "\(learnt) now: a label, a criterion, a code or a drug of --train, --valid or --aux changed, or the store's vectors of their criteria: featurized again, in other batches)")
            }
            guard problems.isEmpty else {
                throw InputError(file: jsonPath, "member \(m + 1) of the interrupted run differs from the member this command trains: "
                                 + problems.joined(separator: "; ") + "; resume with the inputs and settings the run was started with, or replace it with --overwrite")
            }
            let logPath = dirs[m] + "/metrics.jsonl"
            let records = MetricsLog.records(of: "finetune", in: logPath, as: FinetuneRecord.self)
            FilesRead.forget(logPath)     // looked at for its records; not an input of the run's results
            guard records.map(\.epoch) == Array(1...f.epochs), let kept = records.last(where: { $0.epoch == selection.epoch }) else {
                throw InputError(file: logPath, (records.isEmpty ? "is missing or holds no fine-tuning record" : "holds the records of epochs \(records.map { String($0.epoch) }.joined(separator: ", "))")
                                 + "; a finished member's log holds epochs 1 to finetune.epochs = \(f.epochs), once each (member \(m + 1) of the interrupted run is damaged: replace the run with --overwrite)")
            }
            // best.json says what the log's record of its epoch says (it is written from it).
            let logged: Double?
            switch f.selectMetric {
            case .prAUC: logged = kept.validPrAuc
            case .rocAUC: logged = kept.validRocAuc
            case .f1: logged = kept.validF1AtThreshold
            }
            guard selection.valid == logged, selection.threshold == kept.threshold, selection.selectMetric == f.selectMetric.rawValue else {
                throw InputError(file: bestPath, "says valid \(selection.valid.map { "\($0)" } ?? "null"), threshold \(selection.threshold) by \(selection.selectMetric) for epoch \(selection.epoch); "
                                 + "its log (\(logPath)) says \(logged.map { "\($0)" } ?? "null"), \(kept.threshold) by \(f.selectMetric.rawValue): member \(m + 1) of the interrupted run is damaged; replace the run with --overwrite")
            }
            // The kept epoch's scores, which the ensemble's threshold and best.json need: from the checkpoint.
            let p = model.params
            try Checkpoints.restore(tensors, into: p, optimizer: nil, only: { self.pretrainedPath == nil || $0.offset >= model.trainableOffset })
            p.setPrecision(precision)
            p.refreshLowPrecisionCopy()
            let scores = scoreTrials(memberValid, scorer: model, builder: builder, comm: comm, arena: arena,
                                     stall: StallPolicy(stallTimeout: spec.train.stallTimeout))
            var training = MemberTraining(kept: model.trainableOffset)
            training.records = records
            training.bestEpoch = selection.epoch
            training.scores = Array(repeating: [], count: f.epochs)     // only the kept epoch's are used (member selection)
            training.scores[selection.epoch - 1] = scores
            resumed[m] = ResumedMember(training: training, selection: selection)
            if comm.isRoot {
                log("finetune: --resume auto: member \(m + 1) finished before the interruption: kept (epoch \(selection.epoch), valid "
                    + "\(f.selectMetric.shown) \(selection.valid.map { String(format: "%.4f", $0) } ?? "undefined"), \(jsonPath))")
            }
        }
        if comm.isRoot {
            let left = memberCount - resumed.count
            log("finetune: --resume auto: \(resumed.count) of \(memberCount) member(s) kept, \(left) to train" + (left > 0 ? " (from their first epoch)" : ""))
        }
    }

    /// Refuses a folder whose run this command would start over while it holds another kind's files: an ensemble's
    /// members/ or folds.csv under a single model (or folds.csv under a seed ensemble), a single model's checkpoints/
    /// under an ensemble, finished members of member selection under pooled selection (which trains every member again
    /// and would delete them). Such files come from a run started with other finetune.ensemble, finetune.folds or
    /// finetune.epoch_selection.
    func requireLayoutOfThisRun() throws {
        let fm = FileManager.default, f = spec.finetune
        let ensemble = f.ensemble > 1 || !partitions.isEmpty
        let settings = "finetune.ensemble = \(f.ensemble), finetune.folds = \(f.folds), finetune.epoch_selection = \(f.epochSelection.rawValue)"
        func refuse(_ entry: String, _ what: String) -> InputError {
            InputError(file: runDir + "/" + entry, "\(what), which this command (\(settings)) would leave beside its own or delete: the run was started with "
                       + "other settings; resume with those, or replace the run with --overwrite")
        }
        if !ensemble, let entry = ["members", "folds.csv"].first(where: { fm.fileExists(atPath: runDir + "/" + $0) }) {
            throw refuse(entry, "belongs to an ensemble run, not to a single model")
        }
        if ensemble && fm.fileExists(atPath: runDir + "/checkpoints") { throw refuse("checkpoints", "holds a single model's checkpoints, not an ensemble's") }
        if ensemble && partitions.isEmpty && fm.fileExists(atPath: runDir + "/folds.csv") { throw refuse("folds.csv", "belongs to a cross-fitted run, not to a seed ensemble") }
        guard ensemble && f.epochSelection == .pooled else { return }
        // A pooled run killed while it saved its members leaves some finished: those are its own, trained again.
        let names = ((try? fm.contentsOfDirectory(atPath: runDir + "/members")) ?? []).filter { Int($0) != nil }.sorted { Int($0)! < Int($1)! }
        for name in names {
            let dir = runDir + "/members/" + name
            guard let data = try? readRegularFile(dir + "/best.json", what: "best-checkpoint pointer (best.json)", limit: 1 << 20),
                  let selection = try? JSONDecoder().decode(FinetuneSelection.self, from: data),
                  let meta = try? Checkpoints.load(jsonPath: dir + "/checkpoints/" + Checkpoints.name(step: selection.epoch) + ".json").0 else { continue }
            if meta.spec.finetune.epochSelection != .pooled {
                throw refuse("members/\(name)/best.json", "is a member that finished under finetune.epoch_selection = \(meta.spec.finetune.epochSelection.rawValue)")
            }
        }
    }

    /// What differs between member m's checkpoint `meta` and the member this command trains (empty: it is that member).
    func resumeProblems(_ meta: CheckpointMeta, member m: Int, trained: [String], precision: Precision, model: OutcomeModel) -> [String] {
        var problems: [String] = []
        guard meta.kind == .finetune, let head = meta.head else { return ["it is a \(meta.kind) checkpoint, not a fine-tuned member's"] }
        let fold = partitions.isEmpty ? nil : m + 1
        if head.heldOutFold != fold {
            problems.append("its held-out fold is \(head.heldOutFold.map(String.init) ?? "none"), this member's \(fold.map(String.init) ?? "none")")
        }
        if head.trainFile != model.spec.trainFile || head.validFile != model.spec.validFile {
            problems.append("it was fine-tuned on \(head.trainFile) / \(head.validFile), this run names \(model.spec.trainFile) / \(model.spec.validFile) "
                            + "(the members of one run name the same files: give the paths as the run was started with)")
        }
        if head.trainedTrials != trained {
            let then = Set(head.trainedTrials ?? []), now = Set(trained)
            problems.append("it trained or selected on \(then.count) trial(s), this member would on \(now.count) (\(then.subtracting(now).count) only then, "
                            + "\(now.subtracting(then).count) only now: --train, --valid, --aux, --report-trials, data.exclude_file, finetune.folds or finetune.seed changed)")
        }
        if meta.pretrainedChecksum != pretrainedChecksum {
            problems.append("it was fine-tuned from \(meta.pretrained ?? "no pretrained checkpoint") (tensors \(meta.pretrainedChecksum ?? "none")), "
                            + "this run from \(pretrainedPath ?? "none") (tensors \(pretrainedChecksum ?? "none"))")
        }
        if meta.storeIdentity != storeIdentity || meta.storeEncoderWeights != storeEncoderWeights {
            problems.append("its trials' vectors came from \(meta.storeIdentity) (weights \(meta.storeEncoderWeights ?? "none")), this run's from \(storeIdentity) (weights \(storeEncoderWeights ?? "none"))")
        }
        if meta.icdHierarchy != icdHierarchy { problems.append("its ICD-10 tree had checksum \(meta.icdHierarchy ?? "none"), this run's \(icdHierarchy)") }
        // Settings: the sections that shape a member's training, the data paths left out (what they give is compared above).
        var then = CheckpointMeta.trainingIdentity(meta.spec), now = CheckpointMeta.trainingIdentity(specAsTrained(spec, computedIn: precision))
        then.data.featureStore = now.data.featureStore; then.data.icdHierarchy = now.data.icdHierarchy
        then.data.files = now.data.files; then.data.excludeFile = now.data.excludeFile; then.data.excludeCSVs = now.data.excludeCSVs
        let settings = then.differences(from: now)
        problems += settings
        if settings.isEmpty && (meta.model != model.model.config || meta.features != model.space) {
            problems.append("its model or input space differs from this run's (vocabularies or table sizes: the trials' codes, drugs or criteria)")
        }
        // finetune.threshold_confidence sets the ensemble's threshold only, never a member.
        var thenFinetune = meta.spec.finetune
        thenFinetune.thresholdConfidence = spec.finetune.thresholdConfidence
        problems += fieldDifferences(section: "finetune", thenFinetune, spec.finetune)
        if meta.spec.train.gradClip != spec.train.gradClip {
            problems.append("train.grad_clip: \(meta.spec.train.gradClip) in the checkpoint, \(spec.train.gradClip) now")
        }
        if meta.spec.train.precision != specAsTrained(spec, computedIn: precision).train.precision {
            problems.append("train.precision: \(meta.spec.train.precision) in the checkpoint (as computed), \(precision) now")
        }
        return problems
    }

    /// The fields of a section whose values differ, as `section.key: A in the checkpoint, B now` (read from the decoded
    /// values, not their encoding, which leaves some defaults out).
    func fieldDifferences<T: Equatable>(section: String, _ then: T, _ now: T) -> [String] {
        guard then != now else { return [] }
        func text(_ v: Any) -> String { (v as? any RawRepresentable).map { "\($0.rawValue)" } ?? "\(v)" }
        let fields = { (value: T) in Mirror(reflecting: value).children.compactMap { c in c.label.map { ($0, text(c.value)) } } }
        return zip(fields(then), fields(now)).filter { $0.0.1 != $0.1.1 }.map { a, b in
            "\(CheckpointMeta.TrainingIdentity.yamlKey(section: section, field: a.0)): \(a.1) in the checkpoint, \(b.1) now"
        }
    }

    /// Rank 0, resuming: removes what the interrupted run wrote that this one writes again (a single model's log, plots
    /// and checkpoints; a pooled run's members, none of which was kept; the kept pretrained/ checkpoint when it is not
    /// this run's) and says so. Members that did not finish are removed as each is trained again (`run`).
    func removeUnfinishedWork() throws {
        var removed: [String] = []
        func remove(_ name: String) throws {
            var st = stat()
            guard lstat(runDir + "/" + name, &st) == 0 else { return }
            if let left = removeTree(runDir + "/" + name) {
                throw InputError(file: left.path, "cannot remove what the interrupted run left (\(left.reason)), which this run writes again")
            }
            removed.append(name)
        }
        if let pretrainedPath {
            let kept = runDir + "/pretrained/" + URL(fileURLWithPath: pretrainedPath).lastPathComponent
            // Its own copy or link of this checkpoint stays; a partial one (killed while it was made) goes.
            let same = FileManager.default.fileExists(atPath: kept) && (try? Checkpoints.load(jsonPath: kept).0.tensorsChecksum) == pretrainedChecksum
            FilesRead.forget(kept)
            if !same { try remove("pretrained") }
        } else {
            try remove("pretrained")      // an attempt fine-tuned from a checkpoint; this one from none
        }
        removeStaleTemporaries(inFolder: runDir)     // what a write killed with the attempt left (".NAME.tmp-PID", over a minute old)
        if spec.finetune.ensemble <= 1 && partitions.isEmpty {
            let events = ((try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []).filter { $0.hasPrefix("events.out.tfevents.") }.sorted()
            for name in ["metrics.jsonl", "checkpoints", "finetune.svg", "finetune.png"] + events { try remove(name) }
            if !removed.isEmpty { log("finetune: --resume auto: a single model keeps nothing before its end; removed \(removed.joined(separator: ", ")) and training from the first epoch") }
        } else if !keepsFinishedMembers {
            try remove("members")
            if !removed.isEmpty { log("finetune: --resume auto: finetune.epoch_selection: pooled keeps every member's epochs in memory only; removed members/ and training every member from its first epoch") }
        }
    }
}
