import Foundation
import NN
import TestSupport
import XCTest

/// Across nodes: an emulated cluster (`Launch/cluster`: network namespaces on a private bridge, one OpenMPI
/// daemon per node started by the cluster's launch agent, shared memory inside a node and TCP between nodes).
/// 2 nodes x 2 ranks equal one process; a run resumed on 1 node continues the trajectory of a 2-node run;
/// a partition ends the job in bounded time naming the rank and host; a shorter flap is survived bit for bit;
/// a node's processes killed end the job and `Launch/pretrain --max-restarts 1` resumes.
///
/// Needs root and network namespaces (CI runs as root); skipped, with the reason, elsewhere. The cluster is
/// made once for the class under a name of its own and removed in the class tearDown; `Launch/cluster` also
/// removes it on a later `up` if this process was killed before (`--owner`).
final class ClusterTests: XCTestCase {
    static let work = NSTemporaryDirectory() + "cladmop-cluster-\(getpid())"
    static var store: String { work + "/synthetic.store" }
    static let name = "ct\(getpid() % 100_000_000)"
    static let script = repositoryRoot + "/Launch/cluster"
    static let hierarchy = "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"
    static var agent = "", subnet = ""
    static var skipReason: String?
    var cladmop: String { productsFolder.appendingPathComponent("cladmop").path }

    static let fixture = SuiteFixture()
    override class func setUp() {
        if getuid() != 0 { skipReason = "needs root for network namespaces (CI runs as root)"; return }
        if let r = try? runCommand("/usr/sbin/ip", ["netns", "list"]), r.status != 0 {
            skipReason = "'ip netns' does not work here: \(r.output)"; return
        }
        if !FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") { skipReason = "no /usr/sbin/ip (iproute2)"; return }
        try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        fixture.run {
            let synth = try runProduct("cladmop", ["synth", "--trials", "240", "--dim", "24", "--output", store, "--seed", "3", "--set", hierarchy])
            guard synth.status == 0 else { return synth.output }
            let up = try runCommand(script, ["up", "2", "--ranks-per-node", "2", "--name", name, "--owner", "\(getpid())"], timeout: 60)
            guard up.status == 0 else { return "Launch/cluster up failed: \(up.output)" }
            let hostfile = try String(contentsOfFile: "/run/cladmop-cluster/\(name)/hostfile", encoding: .utf8)
            guard let spec = hostfile.split(separator: "\n").first(where: { $0.hasPrefix("# cladmop-cluster agent=") }) else {
                return "no cladmop-cluster line in the hostfile: \(hostfile)"
            }
            let words = spec.split(separator: " ")
            agent = String(words[2].dropFirst("agent=".count)); subnet = String(words[3].dropFirst("subnet=".count))
            return nil
        }
    }
    override func setUpWithError() throws {
        if let reason = Self.skipReason { throw XCTSkip(reason) }
        try Self.fixture.check()
    }
    override class func tearDown() {
        if skipReason == nil {
            let down = try? runCommand(script, ["down", "--name", name], timeout: 60)
            if down?.status != 0 { print("ClusterTests: Launch/cluster down failed: \(down?.output ?? "?")") }
        }
        try? FileManager.default.removeItem(atPath: work)
    }

    /// A hostfile of the class's cluster with the given nodes and slots (the cluster's marker line, so that
    /// Launch/ scripts pass its agent and subnet to mpirun).
    func hostfile(nodes: [Int], slots: Int) throws -> String {
        let path = Self.work + "/hosts-\(nodes.map(String.init).joined(separator: "-"))x\(slots)"
        let text = "# cladmop-cluster agent=\(Self.agent) subnet=\(Self.subnet)\n" + nodes.map { "\(Self.name)-n\($0) slots=\(slots)\n" }.joined()
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// What Launch/common.sh adds for a cluster hostfile.
    func clusterFlags(_ hostfile: String) -> [String] {
        ["--hostfile", hostfile, "--mca", "plm_rsh_agent", Self.agent, "--mca", "btl", "self,vader,tcp",
         "--mca", "btl_tcp_if_include", Self.subnet, "--mca", "oob_tcp_if_include", Self.subnet, "--bind-to", "none"]
    }

    func args(_ run: String, steps: Int, extra: [String] = []) -> [String] {
        ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", Self.work + "/" + run,
         "--set", "data.synthetic=true", "--set", "data.feature_store=\(Self.store)", "--set", Self.hierarchy,
         "--set", "train.max_steps=\(steps)", "--set", "train.epochs=1000", "--set", "train.checksum_every=5"] + extra
    }

    /// Runs pretraining (on the cluster when `hostfile` is given, else on this host); returns the loss of step 1,
    /// the gradient of step 1 and the parameters at `steps`.
    func train(_ run: String, ranks: Int, hostfile: String?, steps: Int, extra: [String] = [], resume: Bool = false,
               timeout: Double = 120) throws -> (loss: Double, gradient: [Float], parameters: [Float], output: String) {
        let dir = Self.work + "/" + run
        if !resume { try? FileManager.default.removeItem(atPath: dir) }
        let gradientFile = dir + ".grad"
        let r = try mpirun(np: ranks, executable: cladmop, arguments: args(run, steps: steps, extra: extra) + (resume ? ["--resume", "auto"] : []),
                           extraFlags: hostfile.map(clusterFlags) ?? [], environment: ["CLADMOP_DUMP_GRADIENT": gradientFile], timeout: timeout)
        XCTAssertEqual(r.status, 0, r.output)
        let metrics = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let first = try JSONSerialization.jsonObject(with: Data(metrics[0].utf8)) as! [String: Any]
        let gradient = (try? Data(contentsOf: URL(fileURLWithPath: gradientFile)))?.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } ?? []
        return (first["loss"] as? Double ?? .nan, gradient, try parameters(run, step: steps), r.output)
    }

    func parameters(_ run: String, step: Int) throws -> [Float] {
        let file = try SafetensorsFile(path: Self.work + "/\(run)/checkpoints/" + String(format: "step-%08d.safetensors", step))
        return try file.tensors.keys.sorted().filter { !$0.hasPrefix("optimizer.") }.flatMap { try file.floats($0) }
    }

    func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
        guard a.count == b.count, !a.isEmpty else { return .infinity }
        var d = 0.0, n = 0.0
        for i in a.indices { d += Double(a[i] - b[i]) * Double(a[i] - b[i]); n += Double(b[i]) * Double(b[i]) }
        return (d / max(n, 1e-30)).squareRoot()
    }

    /// Host names of the ranks as the run saw them: the nodes' own (UTS namespaces), not this machine's.
    func cluster(_ command: [String]) throws -> (status: Int32, output: String, seconds: Double) {
        try runCommand(Self.script, command + ["--name", Self.name], timeout: 60)
    }

    /// Calls `action` once the run's metrics.jsonl holds step `step` (log_every must divide it).
    func when(_ run: String, reaches step: Int, _ action: @escaping @Sendable () -> Void) -> Thread {
        let metrics = Self.work + "/" + run + "/metrics.jsonl"
        let thread = Thread {
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline && ((try? String(contentsOfFile: metrics, encoding: .utf8))?.contains("\"step\":\(step),") != true) {
                usleep(50_000)
            }
            action()
        }
        thread.start()
        return thread
    }

    /// mpirun with its output in a file, not a pipe: after a partition, the daemon left on the cut-off node keeps
    /// the launcher's output descriptors open, so a pipe would not reach its end when mpirun does.
    func mpirunToFile(np: Int, arguments: [String], hostfile: String, timeout: Double) throws -> (status: Int32, output: String, end: Date) {
        let log = Self.work + "/mpirun-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["mpirun", "-np", "\(np)", "--allow-run-as-root", "-x", "OPENBLAS_NUM_THREADS"] + clusterFlags(hostfile) + [cladmop] + arguments
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = env
        process.standardOutput = handle
        process.standardError = handle
        let start = Date()
        try process.run()
        while process.isRunning && Date().timeIntervalSince(start) < timeout { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let end = Date()
        return (process.terminationStatus, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "", end)
    }

    // MARK: - equivalence

    /// 2 nodes x 2 ranks (TCP between the nodes, shared memory inside) against one process, at the bounds of
    /// DistributedEquivalenceTests: the loss, the gradient of step 1, the parameters after 20 Adam steps; and
    /// 2 nodes x 1 rank (TCP only) after 10 SGD steps.
    func testTwoNodesTimesTwoRanksEqualOneProcess() throws {
        let h22 = try hostfile(nodes: [0, 1], slots: 2), h21 = try hostfile(nodes: [0, 1], slots: 1)
        let one = try train("w1-1", ranks: 1, hostfile: nil, steps: 1)
        let ref20 = try train("w1-20", ranks: 1, hostfile: nil, steps: 20)
        let c1 = try train("c22-1", ranks: 4, hostfile: h22, steps: 1)
        let c20 = try train("c22-20", ranks: 4, hostfile: h22, steps: 20)
        XCTAssertEqual(c1.loss, one.loss, accuracy: 1e-5 * abs(one.loss))
        let g = relativeDifference(c1.gradient, one.gradient), p = relativeDifference(c20.parameters, ref20.parameters)
        XCTAssertLessThan(g, 1e-4, "gradient, 2 nodes x 2 ranks")
        XCTAssertLessThan(p, 1e-4, "parameters after 20 steps, 2 nodes x 2 ranks")
        let sgd = ["--set", "optimizer.name=sgd", "--set", "optimizer.lr=0.05"]
        let s1 = try train("sgd-w1", ranks: 1, hostfile: nil, steps: 10, extra: sgd)
        let s2 = try train("sgd-c21", ranks: 2, hostfile: h21, steps: 10, extra: sgd)
        let ps = relativeDifference(s2.parameters, s1.parameters)
        XCTAssertLessThan(ps, 1e-4, "parameters after 10 SGD steps, 2 nodes x 1 rank")
        print("cluster equivalence: 2x2 loss \(c1.loss) vs \(one.loss), gradient rel diff \(g), parameters after 20 steps \(p); 2x1 SGD 10 steps \(ps)")
    }

    /// Fine-tuning (LoRA + head on a random DM branch, `--pretrained none`) on 2 nodes x 2 ranks equals one
    /// process: the same selected epoch and the same saved tensors after 2 epochs. The CSVs are small real TOP
    /// subsets, featurized once on this host into the run's store; every rank reads it.
    func testFinetuneOnTwoNodesEqualsOneProcess() throws {
        let dir = Self.work + "/finetune"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (source, rows, name) in [("phase_I_train.csv", 24, "train.csv"), ("phase_I_valid.csv", 12, "valid.csv")] {
            let lines = try String(contentsOfFile: repositoryRoot + "/data/top/" + source, encoding: .utf8)
            let rowsOut = try csvHeadRows(lines, count: rows)
            try rowsOut.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
        let sets = ["--config", repositoryRoot + "/configs/finetune-phase1.yaml",
                    "--set", "encoder.model_dir=\(repositoryRoot)/models/all-MiniLM-L6-v2", "--set", Self.hierarchy,
                    "--set", "data.exclude_file=\(repositoryRoot)/data/top/heldout_nctids.txt",
                    "--set", "data.feature_store=\(dir)/features.store", "--set", "log.tensorboard=false",
                    "--set", "finetune.epochs=2", "--set", "finetune.batch=8",
                    "--set", "finetune.ensemble=1", "--set", "finetune.select_latest=0", "--set", "finetune.folds=0"]
        // The text encoder is slow in a debug build: featurize (once, on this host) with the release one when built.
        let featurize = try mpirun(np: 1, executable: releaseOrDebugProduct("cladmop"), arguments: ["featurize", "--data", dir + "/train.csv", "--data", dir + "/valid.csv",
                                                                          "--output", dir + "/features.store"] + Array(sets.dropFirst(2)), timeout: 300)
        XCTAssertEqual(featurize.status, 0, featurize.output)
        func finetune(_ run: String, ranks: Int, hostfile: String?) throws -> [String: [Float]] {
            let r = try mpirun(np: ranks, executable: cladmop, arguments: ["finetune", "--pretrained", "none", "--train", dir + "/train.csv",
                                                                          "--valid", dir + "/valid.csv", "--run-dir", dir + "/" + run] + sets,
                               extraFlags: hostfile.map(clusterFlags) ?? [], timeout: 300)
            XCTAssertEqual(r.status, 0, r.output)
            let best = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/\(run)/best.json"))) as! [String: Any]
            let file = try SafetensorsFile(path: dir + "/\(run)/" + (best["checkpoint"] as! String))
            var out: [String: [Float]] = ["epoch": [Float(best["epoch"] as? Int ?? -1)]]
            for name in file.tensors.keys where !name.hasPrefix("optimizer.") { out[name] = try file.floats(name) }
            return out
        }
        let one = try finetune("ft-w1", ranks: 1, hostfile: nil)
        let cluster = try finetune("ft-c22", ranks: 4, hostfile: try hostfile(nodes: [0, 1], slots: 2))
        XCTAssertEqual(cluster["epoch"], one["epoch"], "the selected epoch")
        XCTAssertEqual(Set(cluster.keys), Set(one.keys))
        let names = one.keys.sorted().filter { $0 != "epoch" }
        XCTAssertGreaterThan(names.filter { $0.hasPrefix("finetune.head") }.count, 0)
        let d = relativeDifference(names.flatMap { cluster[$0] ?? [] }, names.flatMap { one[$0]! })
        XCTAssertLessThan(d, 1e-4, "fine-tuned tensors, 2 nodes x 2 ranks vs 1 process")
        print("cluster fine-tuning: 2x2 vs 1 process, selected epoch \(one["epoch"]![0]), tensors rel diff \(d)")
    }

    /// The header and the first `count` records of a CSV's text (records may hold quoted newlines).
    func csvHeadRows(_ text: String, count: Int) throws -> String {
        var out = "", inQuotes = false, records = -1
        for ch in text {
            out.append(ch)
            if ch == "\"" { inQuotes.toggle() }
            if (ch == "\n" || ch == "\r\n") && !inQuotes { records += 1; if records == count { break } }   // "\r\n" is one Character
        }
        return out
    }

    /// 8 steps on 2 nodes, then 8 more on 1 node (both ranks on node 0, shared memory): the same parameters as
    /// 16 straight steps on 2 nodes.
    func testTwoNodeRunResumedOnOneNodeContinuesTheTrajectory() throws {
        let h21 = try hostfile(nodes: [0, 1], slots: 1), h12 = try hostfile(nodes: [0], slots: 2)
        let straight = try train("straight", ranks: 2, hostfile: h21, steps: 16)
        _ = try train("moved", ranks: 2, hostfile: h21, steps: 8)
        let moved = try train("moved", ranks: 2, hostfile: h12, steps: 16, resume: true)
        XCTAssertTrue(moved.output.contains("resume: "), moved.output)
        let d = relativeDifference(moved.parameters, straight.parameters)
        print("cluster: 8 steps on 2 nodes + 8 on 1 node vs 16 on 2 nodes: parameters rel diff \(d)")
        XCTAssertLessThan(d, 1e-6)
    }

    // MARK: - network faults

    /// Node 1's link goes down at step 20 of a long run with the default train.stall_timeout (-1: max(60 s, 10 x
    /// the slowest step)): the watchdog names rank 1 and its host, and the job ends with a non-zero status within
    /// 120 s of the partition (about 60 s of silence, then the abort and the launcher's interruption 10 s later).
    func testPartitionEndsTheJobNamingTheRankAndHost() throws {
        let h21 = try hostfile(nodes: [0, 1], slots: 1)
        let downAt = Box()
        let cutter = when("partition", reaches: 20) { [self] in
            _ = try? cluster(["link", "1", "down"]); downAt.time = Date()
        }
        defer {
            // Heal the link and end what the job left on the cut-off node (its daemon waits for a launcher that is gone).
            _ = try? cluster(["link", "1", "up"]); _ = try? cluster(["kill", "1"])
        }
        let r = try mpirunToFile(np: 2, arguments: args("partition", steps: 1_000_000, extra: ["--set", "train.log_every=10"]),
                                 hostfile: h21, timeout: 240)
        while cutter.isExecuting { usleep(10_000) }
        let after = downAt.time.map { r.end.timeIntervalSince($0) } ?? .infinity
        print("partition: job ended \(String(format: "%.1f", after)) s after the link went down, status \(r.status)")
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertLessThan(after, 120, r.output)
        XCTAssertTrue(r.output.contains("rank 1 (host \(Self.name)-n1) stopped answering"), r.output)
        // mpirun is ended without its crash (an eighth probe: a second SIGINT made OpenMPI 4's mpirun segfault in
        // PMIx_Finalize, printing a backtrace as the job's last words).
        XCTAssertFalse(r.output.contains("Segmentation fault") || r.output.contains("Process received signal"), r.output)
    }

    /// A 3 s flap of node 1's link at step 60 of 300 (shorter than train.stall_timeout=30): TCP recovers and the run ends
    /// with the same parameters, bit for bit, as a run without the flap.
    func testFlapShorterThanTheTimeoutIsSurvived() throws {
        let h21 = try hostfile(nodes: [0, 1], slots: 1)
        let extra = ["--set", "train.log_every=10", "--set", "train.stall_timeout=30"]
        let clean = try train("noflap", ranks: 2, hostfile: h21, steps: 300, extra: extra)
        let flapped = Box()
        let flapper = when("flap", reaches: 60) { [self] in
            _ = try? cluster(["link", "1", "down"]); flapped.time = Date()
            sleep(3)
            _ = try? cluster(["link", "1", "up"])
        }
        defer { _ = try? cluster(["link", "1", "up"]) }
        let start = Date()
        let flap = try train("flap", ranks: 2, hostfile: h21, steps: 300, extra: extra)
        let end = Date()
        while flapper.isExecuting { usleep(10_000) }
        // The link went down while the run was still training (the run outlasted the 3 s outage).
        XCTAssertLessThan(flapped.time ?? .distantFuture, end.addingTimeInterval(-3), "the flap happened mid-run")
        print("flap: 3 s link down at step 60; run took \(String(format: "%.1f", end.timeIntervalSince(start))) s")
        XCTAssertEqual(flap.parameters, clean.parameters)
    }

    /// Every process of node 1 (its daemon and rank) killed at step 100: the job ends, and
    /// `Launch/pretrain --hostfile H --max-restarts 1` relaunches it from the newest checkpoint; it ends with the
    /// parameters of an uninterrupted run.
    func testKilledNodeEndsTheJobAndTheSupervisorResumes() throws {
        let h21 = try hostfile(nodes: [0, 1], slots: 1)
        let extra = ["--set", "train.log_every=10", "--set", "checkpoint.every_steps=40", "--set", "checkpoint.keep_last=3"]
        let clean = try train("nokill", ranks: 2, hostfile: h21, steps: 300, extra: extra)
        let killed = Box()
        let killer = when("killed", reaches: 100) { [self] in _ = try? cluster(["kill", "1"]); killed.time = Date() }
        let r = try runCommand(repositoryRoot + "/Launch/pretrain", ["-np", "2", "--hostfile", h21, "--max-restarts", "1", "--"]
                               + Array(args("killed", steps: 300, extra: extra).dropFirst()), timeout: 240)
        while killer.isExecuting { usleep(10_000) }
        XCTAssertNotNil(killed.time, "node 1 was killed")
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("restart 1 of 1"), r.output)
        XCTAssertTrue(r.output.contains("resume: "), r.output)
        XCTAssertEqual(relativeDifference(try parameters("killed", step: 300), clean.parameters), 0, accuracy: 1e-6)
    }

    /// A node that takes ssh's connection and never answers (a hung sshd, a proxy) ends the launch within ssh's
    /// ConnectTimeout (30 s, which Launch/common.sh passes for a hostfile of real hosts): mpirun had waited for ever
    /// without a word. Node 1's namespace plays the node, with a listener on port 22 that accepts and stays silent.
    func testANodeThatNeverAnswersSshEndsTheLaunch() throws {
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/ssh"), "no ssh client here")
        let ns = "\(Self.name)-n1"
        let address = try runCommand("/usr/sbin/ip", ["-n", ns, "-4", "-o", "addr", "show"]).output
            .split(separator: " ").first { $0.hasPrefix(Self.subnet.split(separator: ".").prefix(3).joined(separator: ".") + ".") }
            .map { String($0.split(separator: "/")[0]) }
        let ip = try XCTUnwrap(address, "no address of \(ns) in \(Self.subnet)")
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        listener.arguments = ["netns", "exec", ns, "python3", "-c", """
            import socket, time
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 22)); s.listen(8)
            held = []
            while True: held.append(s.accept()[0])
            """]
        try listener.run()
        defer { listener.terminate(); kill(listener.processIdentifier, SIGKILL) }
        usleep(500_000)
        let hosts = Self.work + "/silent.hosts"
        try "localhost slots=1\n\(ip) slots=1\n".write(toFile: hosts, atomically: true, encoding: .utf8)
        let r = try runCommand(repositoryRoot + "/Launch/pretrain", ["-np", "2", "--hostfile", hosts, "--"]
                               + Array(args("silent", steps: 4).dropFirst()), timeout: 120)
        XCTAssertNotEqual(r.status, 0, r.output)
        XCTAssertLessThan(r.seconds, 90, r.output)
        XCTAssertTrue(r.output.contains("banner exchange"), r.output)
    }

    // MARK: - the script

    /// Bad input exits 2 with a message; `down` of nothing succeeds; `up` twice is fine; `down` leaves no
    /// namespace, veth or bridge of the cluster.
    func testClusterScriptInputUpTwiceAndDownLeavesNothing() throws {
        for (bad, why) in [(["up", "0"], "N must be a whole number from 1 to 64, got '0'"), (["up", "abc"], "got 'abc'"),
                           (["up", "2", "--bandwidth", "fast"], "--bandwidth: a rate in tc units from 100kbit up"),
                           // tc had said "the rate parameter is mandatory" for 1bit, and stored another burst under ~15kbit.
                           (["up", "2", "--bandwidth", "1bit"], "got '1bit'"), (["up", "2", "--bandwidth", "99kbit"], "got '99kbit'"),
                           (["up", "2", "--ranks-per-node", "0"], "--ranks-per-node: a whole number from 1 to 1024, got '0'"),
                           (["frobnicate"], "unknown command 'frobnicate'"),
                           (["down", "--all", "--name", "x"], "give either --all or --name, not both"),
                           (["up", "1", "--name", "abcdefghij"], "--name: at most 9 characters for up"),
                           // An eleventh probe: bash arithmetic had read 010 as 8 nodes.
                           (["up", "010"], "N must be a whole number from 1 to 64, got '010'"),
                           // A probe (session 42): a stray word had been "extra needs a value".
                           (["up", "2", "extra"], "unexpected argument 'extra'")] {
            let r = try runCommand(Self.script, bad)
            XCTAssertEqual(r.status, 2, "\(bad): \(r.output)")
            XCTAssertTrue(r.output.hasPrefix("Launch/cluster: ") && r.output.contains(why), "\(bad): \(r.output)")
        }
        let other = "cx\(getpid() % 100_000_000)"
        XCTAssertEqual(try runCommand(Self.script, ["down", "--name", other]).status, 0)
        defer { _ = try? runCommand(Self.script, ["down", "--name", other]) }
        for _ in 0..<2 {
            let up = try runCommand(Self.script, ["up", "2", "--name", other, "--bandwidth", "1gbit", "--owner", "\(getpid())"], timeout: 60)
            XCTAssertEqual(up.status, 0, up.output)
        }
        let links = try runCommand("/usr/sbin/ip", ["-o", "link", "show"]).output
        XCTAssertTrue(links.contains("\(other)-br") && links.contains("\(other)-n1"), links)
        // A node that is not there is bad input (it had exited 1); `up` brings a link set down back up.
        let missing = try runCommand(Self.script, ["link", "5", "down", "--name", other])
        XCTAssertEqual(missing.status, 2, missing.output)
        XCTAssertTrue(missing.output.contains("no node '5' in cluster \(other)"), missing.output)
        XCTAssertEqual(try runCommand(Self.script, ["link", "1", "down", "--name", other]).status, 0)
        XCTAssertFalse(try runCommand("/usr/sbin/ip", ["-o", "link", "show", "dev", "\(other)-n1"]).output.contains(",UP"))
        let again = try runCommand(Self.script, ["up", "2", "--name", other, "--bandwidth", "1gbit", "--owner", "\(getpid())"], timeout: 60)
        XCTAssertTrue(again.output.contains("already up"), again.output)
        XCTAssertTrue(try runCommand("/usr/sbin/ip", ["-o", "link", "show", "dev", "\(other)-n1"]).output.contains(",UP"))
        XCTAssertTrue(try runCommand("/usr/sbin/tc", ["qdisc", "show", "dev", "\(other)-n1"]).output.contains("tbf"))
        // A node's own eth0 set down inside its namespace (a probe, session 42: status said "link up" and `up` left it
        // down): status says DOWN, and `up` brings it back.
        XCTAssertEqual(try runCommand("/usr/sbin/ip", ["-n", "\(other)-n1", "link", "set", "eth0", "down"]).status, 0)
        XCTAssertTrue(try runCommand(Self.script, ["status", "--name", other]).output.contains("link DOWN"))
        _ = try runCommand(Self.script, ["up", "2", "--name", other, "--bandwidth", "1gbit", "--owner", "\(getpid())"], timeout: 60)
        XCTAssertTrue(try runCommand("/usr/sbin/ip", ["-n", "\(other)-n1", "-o", "link", "show", "eth0"]).output.contains(",UP"))
        XCTAssertFalse(try runCommand(Self.script, ["status", "--name", other]).output.contains("link DOWN"))
        XCTAssertEqual(try runCommand(Self.script, ["down", "--name", other]).status, 0)
        XCTAssertFalse(try runCommand("/usr/sbin/ip", ["-o", "link", "show"]).output.contains("\(other)-"))
        XCTAssertFalse(try runCommand("/usr/sbin/ip", ["netns", "list"]).output.contains("\(other)-"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/cladmop-cluster/\(other)"))
    }

    /// `up` interrupted by a closed terminal (SIGHUP) removes what it made and ends by the signal, as by SIGINT and
    /// SIGTERM (a probe: SIGHUP had left 11 namespaces, 12 links and the cluster's state behind).
    func testUpInterruptedBySIGHUPRemovesWhatItMade() throws {
        let other = "ch\(getpid() % 100_000_000)"
        defer { _ = try? runCommand(Self.script, ["down", "--name", other]) }
        let up = Process()
        up.executableURL = URL(fileURLWithPath: Self.script)
        up.arguments = ["up", "16", "--name", other, "--owner", "\(getpid())"]
        up.standardOutput = FileHandle.nullDevice
        up.standardError = FileHandle.nullDevice
        try up.run()
        // The state folder is made once the cleanup is armed; the first namespaces follow.
        let start = Date()
        while up.isRunning && Date().timeIntervalSince(start) < 30
              && !((try? runCommand("/usr/sbin/ip", ["netns", "list"]).output.contains("\(other)-n1")) ?? false) { usleep(20_000) }
        try XCTSkipUnless(up.isRunning, "up of 16 nodes ended before it could be interrupted")
        kill(up.processIdentifier, SIGHUP)
        up.waitUntilExit()
        XCTAssertEqual(up.terminationStatus, 129)
        XCTAssertFalse(try runCommand("/usr/sbin/ip", ["netns", "list"]).output.contains("\(other)-"))
        XCTAssertFalse(try runCommand("/usr/sbin/ip", ["-o", "link", "show"]).output.contains("\(other)-"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/run/cladmop-cluster/\(other)"))
    }

    /// The subnet choice sees routes that hold a 10.213.X.0/24 without naming it (10.213.0.0/20, 10.0.0.0/8: it had
    /// compared the first three numbers only): the script runs in a namespace of the test's own whose routes say so.
    func testSubnetChoiceAvoidsWiderRoutes() throws {
        let ns = "cv\(getpid() % 100_000_000)", other = "cw\(getpid() % 100_000_000)"
        let ip = "/usr/sbin/ip"
        func inside(_ args: [String]) throws -> (status: Int32, output: String, seconds: Double) { try runCommand(ip, ["netns", "exec", ns, Self.script] + args, timeout: 60) }
        defer {
            _ = try? inside(["down", "--name", other])
            _ = try? runCommand(ip, ["netns", "del", ns])
        }
        for args in [["netns", "add", ns], ["-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                     ["-n", ns, "link", "set", "d0", "up"], ["-n", ns, "link", "set", "d1", "up"],
                     ["-n", ns, "route", "add", "10.213.0.0/20", "dev", "d0"]] {
            let r = try runCommand(ip, args)
            XCTAssertEqual(r.status, 0, "ip \(args): \(r.output)")
        }
        let up = try inside(["up", "1", "--name", other, "--owner", "\(getpid())"])
        XCTAssertEqual(up.status, 0, up.output)
        XCTAssertTrue(up.output.contains("subnet 10.213.16.0/24"), up.output)
        XCTAssertEqual(try inside(["down", "--name", other]).status, 0)
        XCTAssertEqual(try runCommand(ip, ["-n", ns, "route", "add", "10.0.0.0/8", "dev", "d1"]).status, 0)
        let none = try inside(["up", "1", "--name", other, "--owner", "\(getpid())"])
        XCTAssertEqual(none.status, 1, none.output)
        XCTAssertTrue(none.output.contains("no free 10.213.X.0/24 subnet here that no route of this machine holds (10.213.")
                      && none.output.contains(".0/24 lies inside route \"10."), none.output)
        let taken = try inside(["up", "1", "--name", other, "--subnet", "10.213.3.0/24", "--owner", "\(getpid())"])
        XCTAssertEqual(taken.status, 0, taken.output)
        XCTAssertTrue(taken.output.contains("--subnet 10.213.3.0/24 lies inside route \"10."), taken.output)
        XCTAssertEqual(try inside(["down", "--name", other]).status, 0)
        XCTAssertFalse(try runCommand(ip, ["netns", "list"]).output.contains("\(other)-"))
    }
}

final class Box: @unchecked Sendable { var time: Date? }
