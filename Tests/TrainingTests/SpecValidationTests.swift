@testable import Config
import Foundation
import Support
import TestSupport
@testable import Training
import XCTest
import Yams

/// Typed specifications: every relation between keys is checked once, whether the values come from YAML and
/// --set or from a checkpoint's metadata; errors name the key and exit with status 2.
final class SpecValidationTests: XCTestCase {
    static let work = NSTemporaryDirectory() + "cladmop-spec-\(getpid())"
    static let hierarchy = "\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"
    static var checkpoint: String { work + "/run/checkpoints/step-00000002.json" }
    static let fixture = SuiteFixture()

    /// A 2-step smoke pretraining on a synthetic store, one rank: a real checkpoint to edit.
    override class func setUp() {
        try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        fixture.run {
            let store = work + "/synthetic.store"
            let s = try runProduct("cladmop", ["synth", "--trials", "60", "--dim", "12", "--output", store, "--set", "data.icd_hierarchy=\(hierarchy)"])
            guard s.status == 0 else { return s.output }
            let p = try runProduct("cladmop", ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", work + "/run",
                                               "--set", "data.synthetic=true", "--set", "data.feature_store=\(store)",
                                               "--set", "data.icd_hierarchy=\(hierarchy)", "--set", "train.max_steps=2"])
            return p.status == 0 ? nil : p.output
        }
    }

    override class func tearDown() { try? FileManager.default.removeItem(atPath: work) }

    func cladmop(_ args: [String]) throws -> (status: Int32, output: String) { try runProduct("cladmop", args) }

    /// Plain scalars read by YAML 1.2 (an eighth probe: Yams' YAML 1.1 had read `global_batch: 012` as octal 10,
    /// `stall_timeout: 1:30` as 90 and `exclude_file: no` as false); a text key takes the text as written, in the file
    /// and in --set lists alike, and an error shows the value as written.
    func testPlainScalarsReadAsYAML12AndTextKeysKeepTheirText() throws {
        let file = Self.work + "/yaml12.yaml"
        try "data:\n  exclude_file: no\n  feature_store: 1:30\n  files: [a.csv, 0x10, 012]\nencoder:\n  model_dir: yes\ntrain:\n  global_batch: 012\n  epochs: 0x10\noptimizer:\n  lr: .5e-2\nfinetune:\n  lora_cross: False\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let c = try Config(file: file)
        XCTAssertEqual(c.values["data.exclude_file"], .string("no"))
        XCTAssertEqual(c.values["data.feature_store"], .string("1:30"))
        XCTAssertEqual(c.values["data.files"], .strings(["a.csv", "0x10", "012"]))
        XCTAssertEqual(c.values["encoder.model_dir"], .string("yes"))
        XCTAssertEqual(c.values["train.global_batch"], .int(12))
        XCTAssertEqual(c.values["train.epochs"], .int(16))
        XCTAssertEqual(c.values["optimizer.lr"], .double(0.005))
        XCTAssertEqual(c.values["finetune.lora_cross"], .bool(false))
        let o = try Config(file: nil, overrides: ["train.global_batch=0012", "data.files=[b.csv, 010]"])
        XCTAssertEqual(o.values["train.global_batch"], .int(12))
        XCTAssertEqual(o.values["data.files"], .strings(["b.csv", "010"]))
        for (set, shown) in [("train.stall_timeout=1:30", "train.stall_timeout = 1:30 is invalid"), ("finetune.lora_cross=yes", "finetune.lora_cross = yes is invalid"),
                             ("train.global_batch=0o", "train.global_batch = 0o is invalid"), ("optimizer.lr=1e3.5", "optimizer.lr = 1e3.5 is invalid")] {
            XCTAssertThrowsError(try Config(file: nil, overrides: [set])) { XCTAssertTrue("\($0)".contains(shown), "\($0)") }
        }
    }

    /// The resolved YAML writes data.sct_phases as numbers (a probe saw `["1"]`, also in a run's config.yaml) and
    /// file names quoted; both read back to the same values.
    func testTheResolvedYAMLWritesPhasesAsNumbers() throws {
        let c = try Config(file: nil, overrides: ["data.sct_phases=[2, 1]", "data.files=[a.csv, 010]"])
        XCTAssertTrue(c.yaml.contains("\n  sct_phases: [2, 1]\n"), c.yaml)
        XCTAssertTrue(c.yaml.contains("\n  files: [\"a.csv\", \"010\"]\n"), c.yaml)
        let file = Self.work + "/resolved-phases.yaml"
        try c.yaml.write(toFile: file, atomically: true, encoding: .utf8)
        let again = try Config(file: file)
        XCTAssertEqual(again.values["data.sct_phases"], .strings(["2", "1"]))
        XCTAssertEqual(again.values["data.files"], .strings(["a.csv", "010"]))
    }

    /// A checkpoint's model, loss and data sections name their differences by configuration key (`changedKeys`): each
    /// field of the three sections, optional ones set, must map to a key of the schema.
    func testEveryTrainingIdentityFieldIsAConfigurationKey() throws {
        let spec = try RunSpec(Config(file: nil, overrides: ["data.exclude_file=held-out.txt"]))
        let identity = CheckpointMeta.trainingIdentity(spec)
        let sections = identity.sections()
        XCTAssertEqual(Set(sections.keys), Set(CheckpointMeta.TrainingIdentity.sectionNames))
        var count = 0
        for (section, fields) in sections {
            for field in fields.keys {
                let key = CheckpointMeta.TrainingIdentity.yamlKey(section: section, field: field)
                XCTAssertNotNil(ConfigSchema.key(key), "\(section).\(field) -> \(key) is not a configuration key")
                count += 1
            }
        }
        XCTAssertGreaterThan(count, 20)
        XCTAssertNotNil(sections["data"]?["excludeFile"])
        XCTAssertEqual(CheckpointMeta.TrainingIdentity.yamlKey(section: "data", field: "excludeCSVs"), "data.exclude_csvs")
        var other = spec
        other.data.maxCodes += 1
        XCTAssertEqual(identity.changedKeys(from: CheckpointMeta.trainingIdentity(other)).map(\.key), ["data.max_codes"])
    }

    /// finetune.threshold_confidence reaches the spec, is range-checked, and is written into checkpoint metadata only
    /// when it is not the default (a checkpoint written before the key re-encodes to the same bytes).
    func testThresholdConfidenceIsValidatedAndEncodedOnlyWhenNotTheDefault() throws {
        let base = try RunSpec(Config(file: nil, overrides: []))
        let set = try RunSpec(Config(file: nil, overrides: ["finetune.threshold_confidence=0.75"]))
        XCTAssertEqual(base.finetune.thresholdConfidence, 0.9)
        XCTAssertEqual(set.finetune.thresholdConfidence, 0.75)
        let plain = try JSONEncoder().encode(base.finetune), changed = try JSONEncoder().encode(set.finetune)
        XCTAssertFalse(String(decoding: plain, as: UTF8.self).contains("thresholdConfidence"))
        XCTAssertTrue(String(decoding: changed, as: UTF8.self).contains("\"thresholdConfidence\":0.75"))
        XCTAssertEqual(try JSONDecoder().decode(FinetuneSpec.self, from: plain).thresholdConfidence, 0.9)
        XCTAssertEqual(try JSONDecoder().decode(FinetuneSpec.self, from: changed).thresholdConfidence, 0.75)
        XCTAssertThrowsError(try RunSpec(Config(file: nil, overrides: ["finetune.threshold_confidence=0.3"]))) { error in
            XCTAssertTrue("\(error)".contains("finetune.threshold_confidence"), "\(error)")
        }
    }

    func testRelationsBetweenKeysAreCheckedForEveryCommand() throws {
        let cases: [([String], [String], String)] = [
            (["bench", "--config", repositoryRoot + "/configs/bench.yaml"], ["model.dim=10", "model.heads=3"],
             "model.heads = 3 is invalid (expected a divisor of model.dim = 10)"),
            (["config"], ["model.grouping_layers=4", "model.centroids=4"], "model.centroids = 4 is invalid"),
            (["config"], ["optimizer.eps=0"], "optimizer.eps = 0.0 is invalid"),
            (["config"], ["encoder.max_tokens=512", "encoder.batch_tokens=256"], "encoder.batch_tokens = 256 is invalid"),
            (["config"], ["data.exclude_file=\"\""], ""),   // the empty string is allowed: no exclusion list
        ]
        for (command, sets, expected) in cases {
            let r = try cladmop(command + sets.flatMap { ["--set", $0] })
            if expected.isEmpty { XCTAssertEqual(r.status, 0, r.output); continue }
            XCTAssertEqual(r.status, 2, "\(sets): \(r.output)")
            XCTAssertTrue(r.output.contains(expected), "\(sets): expected '\(expected)' in \(r.output)")
        }
    }

    /// Copies the smoke checkpoint into a folder of its own with its metadata edited by `edit`.
    func editedCheckpoint(_ name: String, _ edit: (inout [String: Any]) -> Void) throws -> String {
        let dir = Self.work + "/" + name
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var meta = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.checkpoint))) as? [String: Any])
        let tensors = meta["tensorsFile"] as! String
        try FileManager.default.copyItem(atPath: Self.work + "/run/checkpoints/" + tensors, toPath: dir + "/" + tensors)
        edit(&meta)
        let path = dir + "/step-00000002.json"
        try JSONSerialization.data(withJSONObject: meta).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testCheckpointMetadataIsValidatedLikeAConfiguration() throws {
        try Self.fixture.check()
        // The checkpoint as written loads.
        let (meta, _) = try Checkpoints.load(jsonPath: Self.checkpoint)
        XCTAssertEqual(meta.spec.train.maxSteps, 2)
        XCTAssertEqual(meta.kind, .pretrain)
        func nested(_ m: inout [String: Any], _ section: String, _ key: String, _ value: Any) {
            var s = m[section] as! [String: Any]; s[key] = value; m[section] = s
        }
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("heads0", { nested(&$0, "model", "heads", 0) }, "model.heads = 0 is invalid"),
            ("heads5", { nested(&$0, "model", "heads", 5) }, "model.heads = 5 is invalid (expected a divisor of model.dim = 16"),
            ("groups0", { nested(&$0, "model", "groupingLayers", 0) }, "model.groupingLayers = 0 is invalid"),
            ("step", { $0["step"] = -5 }, "step = -5 is invalid"),
            ("vocab", { nested(&$0, "model", "molVocab", 7) }, "features.smilesVocabulary"),
            ("kind", { $0["kind"] = "bogus" }, "key kind"),
            ("missing", { $0["model"] = nil }, "key model is missing"),
            ("version", { $0["version"] = 1 }, "version 1"),
            ("edited-spec", { m in var spec = m["spec"] as! [String: Any]; var model = spec["model"] as! [String: Any]
                              model["dim"] = 32; spec["model"] = model; m["spec"] = spec }, "configHash"),
            ("heads-valid-edit", { nested(&$0, "model", "heads", 4) }, "metadataChecksum"),
            ("maxlen-edit", { nested(&$0, "features", "maxMolTokens", 12) }, "metadataChecksum"),
            ("spec-range", { m in var spec = m["spec"] as! [String: Any]; var t = spec["train"] as! [String: Any]
                             t["globalBatch"] = 0; spec["train"] = t; m["spec"] = spec }, "spec: train.global_batch = 0 is invalid"),
            ("spec-threshold-confidence", { m in var spec = m["spec"] as! [String: Any]; var f = spec["finetune"] as! [String: Any]
                                            f["thresholdConfidence"] = 0.3; spec["finetune"] = f; m["spec"] = spec },
             "spec: finetune.threshold_confidence = 0.3 is invalid"),
        ]
        for (name, edit, expected) in cases {
            let path = try editedCheckpoint(name, edit)
            XCTAssertThrowsError(try Checkpoints.load(jsonPath: path), name) { error in
                XCTAssertTrue(error is InputError, "\(name): \(error)")
                XCTAssertTrue("\(error)".contains(path), "\(name): the file is named: \(error)")
                XCTAssertTrue("\(error)".contains(expected), "\(name): expected '\(expected)' in \(error)")
            }
        }
        // The command line: exit status 2 and the key, before any data is read.
        let path = try editedCheckpoint("cli-heads0", { nested(&$0, "model", "heads", 0) })
        let r = try cladmop(["evaluate", "--checkpoint", path, "--data", Self.work + "/none.csv"])
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("model.heads = 0"), r.output)
    }

    func testBestJSONLinksAreBoundedAndCyclesRefused() throws {
        let a = Self.work + "/cycle-a", b = Self.work + "/cycle-b"
        for (dir, other) in [(a, b), (b, a)] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try "{\"checkpoint\": \"\(other)\"}".write(toFile: dir + "/best.json", atomically: true, encoding: .utf8)
        }
        XCTAssertThrowsError(try resolveCheckpointJSON(a)) { XCTAssertTrue("\($0)".contains("cycle"), "\($0)") }
        let r = try cladmop(["evaluate", "--checkpoint", a, "--data", Self.work + "/none.csv"])
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("cycle"), r.output)
        // A run directory resolves through its best.json.
        if Self.fixture.failure == nil {
            XCTAssertEqual(URL(fileURLWithPath: try resolveCheckpointJSON(Self.work + "/run")).lastPathComponent, "step-00000002.json")
        }
    }

    /// A run's own pointers name the run (a fifth probe): RUN/best.json of a fine-tuned ensemble is RUN, whose best.json
    /// lists the members (scoring RUN/best.json as the file its "checkpoint" key names would score one member only);
    /// a pretraining run's checkpoints folder and checkpoints/best.json are RUN, against which that best.json's path is
    /// relative. Other paths, a member's best.json included, stay as given.
    func testARunsBestJSONAndCheckpointsFolderNameTheRun() throws {
        let ensemble = Self.work + "/pointers/ensemble", pretrain = Self.work + "/pointers/pretrain"
        for dir in [ensemble + "/members/1", pretrain + "/checkpoints"] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        try "{\"checkpoint\": \"members/1/checkpoints/step-00000001.json\", \"members\": [\"members/1/checkpoints/step-00000001.json\"], \"threshold\": 0.5}"
            .write(toFile: ensemble + "/best.json", atomically: true, encoding: .utf8)
        try "{\"checkpoint\": \"checkpoints/step-00000001.json\"}".write(toFile: ensemble + "/members/1/best.json", atomically: true, encoding: .utf8)
        try "{\"checkpoint\": \"checkpoints/step-00000004.json\"}".write(toFile: pretrain + "/checkpoints/best.json", atomically: true, encoding: .utf8)
        XCTAssertEqual(runFolder(named: ensemble + "/best.json"), ensemble)
        XCTAssertEqual(try ensembleMembers(runFolder(named: ensemble + "/best.json"))?.members.count, 1)
        XCTAssertEqual(runFolder(named: ensemble + "/members/1/best.json"), ensemble + "/members/1")
        for path in [pretrain + "/checkpoints", pretrain + "/checkpoints/", pretrain + "/checkpoints/best.json"] {
            XCTAssertEqual(runFolder(named: path), pretrain, path)
            XCTAssertEqual(try resolveCheckpointJSON(path), pretrain + "/checkpoints/step-00000004.json", path)
        }
        XCTAssertEqual(runFolder(named: ensemble), ensemble)
        XCTAssertEqual(runFolder(named: "configs/smoke.yaml"), "configs/smoke.yaml")
    }

    /// A pretraining run named as a run (folder, checkpoints/, checkpoints/best.json) whose metrics.jsonl does not end
    /// with the summary record (a stopped run) is said to be unfinished when fine-tuning or scoring uses it (a thirteenth
    /// probe: a run interrupted after its first evaluation was taken without a word); a finished run, a checkpoint file
    /// named as such and a fine-tuning run are not.
    func testAnUnfinishedPretrainingRunIsSaid() throws {
        let run = Self.work + "/unfinished"
        try FileManager.default.createDirectory(atPath: run + "/checkpoints", withIntermediateDirectories: true)
        try "# config\n".write(toFile: run + "/config.yaml", atomically: true, encoding: .utf8)
        try "{\"checkpoint\": \"checkpoints/step-00000004.safetensors\"}".write(toFile: run + "/checkpoints/best.json", atomically: true, encoding: .utf8)
        let step = "{\"loss\":1.5,\"step\":4,\"type\":\"train\"}\n", summary = "{\"step\":4,\"type\":\"summary\"}\n"
        try step.write(toFile: run + "/metrics.jsonl", atomically: true, encoding: .utf8)
        for path in [run, run + "/checkpoints", run + "/checkpoints/best.json"] {
            let warning = try XCTUnwrap(unfinishedPretrainingWarning(path), path)
            XCTAssertTrue(warning.contains("this pretraining run did not finish") && warning.contains(path), warning)
        }
        try "{}".write(toFile: run + "/checkpoints/step-00000004.json", atomically: true, encoding: .utf8)
        XCTAssertNil(unfinishedPretrainingWarning(run + "/checkpoints/step-00000004.json"), "a checkpoint named as a file")
        // NUL padding and blank lines after the last record are not records.
        try (step + "\n\u{0}\u{0}\u{0}\n \t\r\n").write(toFile: run + "/metrics.jsonl", atomically: true, encoding: .utf8)
        XCTAssertNotNil(unfinishedPretrainingWarning(run))
        try (step + summary + "\u{0}\u{0}\n\n").write(toFile: run + "/metrics.jsonl", atomically: true, encoding: .utf8)
        XCTAssertNil(unfinishedPretrainingWarning(run))
        // Finished: the summary is the last record (a blank line after it changes nothing).
        try (step + summary + "\n").write(toFile: run + "/metrics.jsonl", atomically: true, encoding: .utf8)
        XCTAssertNil(unfinishedPretrainingWarning(run))
        // Resumed and stopped again: a summary, then more steps.
        try (step + summary + step).write(toFile: run + "/metrics.jsonl", atomically: true, encoding: .utf8)
        XCTAssertNotNil(unfinishedPretrainingWarning(run))
        // A fine-tuning run (its own best.json) is not a pretraining run.
        try "{\"checkpoint\": \"checkpoints/step-00000001.json\"}".write(toFile: run + "/best.json", atomically: true, encoding: .utf8)
        XCTAssertNil(unfinishedPretrainingWarning(run))
        // The real command says it on a copy of the smoke run without its summary.
        if let failure = Self.fixture.failure { return XCTFail("the smoke pretraining failed: \(failure)") }
        let copy = Self.work + "/unfinished-copy"
        try FileManager.default.copyItem(atPath: Self.work + "/run", toPath: copy)
        let records = try String(contentsOfFile: copy + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").filter { !$0.contains("\"summary\"") }
        try (records.joined(separator: "\n") + "\n").write(toFile: copy + "/metrics.jsonl", atomically: true, encoding: .utf8)
        let r = try cladmop(["embed", "--checkpoint", copy, "--data", repositoryRoot + "/data/top/toy_valid.csv", "--output", Self.work + "/e.safetensors",
                             "--set", "data.icd_hierarchy=\(Self.hierarchy)", "--set", "data.feature_store=\(Self.work)/synthetic.store"])
        XCTAssertTrue(r.output.contains("warning: \(copy): this pretraining run did not finish"), r.output)
    }

    /// What resume says when the SCT corpus behind the same configuration changed: each branch of
    /// `CorpusFingerprint.differences` (the end-to-end test, ReliabilityTests, reaches only the store's).
    func testCorpusDifferencesNameWhatChanged() throws {
        func fingerprint(store: String = "s", train: Int = 100, validation: Int = 12, trials: String = "t") throws -> CorpusFingerprint {
            try JSONDecoder().decode(CorpusFingerprint.self, from: Data(
                "{\"store\": \"\(store)\", \"train\": \(train), \"validation\": \(validation), \"trials\": \"\(trials)\"}".utf8))
        }
        let checkpoint = try fingerprint()
        XCTAssertEqual(checkpoint.differences(from: try fingerprint()), [])
        XCTAssertEqual(checkpoint.differences(from: try fingerprint(trials: "u")),
                       ["the same number of trials, but other ones (data.exclude_file, data.exclude_csvs or the store's rows changed)"])
        XCTAssertEqual(checkpoint.differences(from: try fingerprint(validation: 13, trials: "u")),
                       ["100 training / 12 validation trials in the checkpoint, 100 / 13 now"])
        let both = checkpoint.differences(from: try fingerprint(store: "x", train: 90, trials: "u"))
        XCTAssertEqual(both.count, 2)
        XCTAssertTrue(both[0].hasPrefix("the feature store (data.feature_store) holds other data"), "\(both)")
        XCTAssertEqual(both[1], "100 training / 12 validation trials in the checkpoint, 90 / 12 now")
    }

    /// Ranks started with different settings (here rank 1 gets another train.seed: a different data order) end
    /// the job at once, naming the key, instead of training apart or crashing in a collective.
    func testRanksWithDifferentSettingsAreRefused() throws {
        try Self.fixture.check()
        let wrapper = Self.work + "/rank1-differs.sh"
        try "#!/bin/bash\nif [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then exec \"$@\" --set train.seed=2; else exec \"$@\"; fi\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        let cladmop = productsFolder.appendingPathComponent("cladmop").path
        let r = try mpirun(np: 2, executable: wrapper, arguments: [cladmop, "pretrain", "--config", repositoryRoot + "/configs/smoke.yaml",
                                                                   "--run-dir", Self.work + "/disagree", "--set", "data.synthetic=true",
                                                                   "--set", "data.feature_store=\(Self.work)/synthetic.store",
                                                                   "--set", "data.icd_hierarchy=\(Self.hierarchy)"], timeout: 60)
        XCTAssertEqual(r.status, 2, r.output)
        XCTAssertTrue(r.output.contains("train.seed"), r.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: Self.work + "/disagree/metrics.jsonl"), "nothing trained")
    }
}

/// The YAML boundary's second line of defence: an alias that got past the text scan (here the scan is skipped) is
/// stopped by the node budget before it expands, and the text scan itself catches the forms that had got past it.
final class YAMLAliasBudgetTests: XCTestCase {
    /// An alias bomb of 8 levels of mappings of 10 aliases (10^8 leaves from under a kilobyte; lists of lists are refused anyway).
    static let bomb: String = {
        var lines = ["a0: &a0 {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x, k9: x}"]
        for level in 1...8 { lines.append("a\(level): &a\(level) {" + (0..<10).map { "k\($0): *a\(level - 1)" }.joined(separator: ", ") + "}") }
        return lines.joined(separator: "\n") + "\n"
    }()

    func testAnAliasBombPastTheScanIsStoppedByTheNodeBudget() throws {
        let node = try XCTUnwrap(try Yams.compose(yaml: Self.bomb))
        var budget = 2 * Self.bomb.utf8.count + 2
        let start = Date()
        XCTAssertThrowsError(try YAMLInput.value(node, path: "", origin: "bomb.yaml", depth: 0, budget: &budget)) { error in
            XCTAssertTrue("\(error)".contains("more values than its text holds"), "\(error)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "the budget must stop the walk long before 10^8 leaves")
    }

    func testTheScanRefusesAnchorsAfterATabInFlowContinuationLinesAndInCRLFFiles() {
        for text in ["train:\n  epochs:\t&a 3\n", "data:\n  files: [a.csv,\n    *x]\n", "data:\r\n  files: [a.csv,\r\n    *x]\r\n",
                     "data:\n  exclude_file: {p 'q: 1, a: &a {k: 1}}\n"] {
            XCTAssertThrowsError(try YAMLInput.scan(text, origin: "c.yaml"), text.debugDescription) { error in
                XCTAssertTrue("\(error)".contains("anchors and aliases"), "\(error)")
            }
        }
        // A tag where a node starts (the reader had ignored or re-typed it), also before an anchor; a ! inside a value is text.
        for text in ["data:\n  files: [!!str &a x]\n", "train:\n  seed: !!python/object:os.system 1\n", "train:\n  global_batch: !!null 64\n", "a:\n  b:\t!x 1\n"] {
            XCTAssertThrowsError(try YAMLInput.scan(text, origin: "c.yaml"), text.debugDescription) { error in
                XCTAssertTrue("\(error)".contains("line 2: YAML tags"), "\(error)")
            }
        }
        XCTAssertNoThrow(try YAMLInput.scan("data:\n  feature_store: runs/wow!.store\n", origin: "c.yaml"))
        // Plain text with & and * is no anchor; a CRLF file of 20 list items is not 20 levels deep.
        let crlf = "data:\r\n  files:\r\n" + (0..<20).map { "    - f\($0).csv\r\n" }.joined()
        for text in ["data:\n  feature_store: my *draft* store\n  exclude_file: R &D\n", "x: run-*draft*\ny: x:*y\n", crlf] {
            XCTAssertNoThrow(try YAMLInput.scan(text, origin: "c.yaml"), text.debugDescription)
        }
    }
}
