import Foundation
import NN
import TestSupport
import XCTest

/// SPEC 5.3's central test: W ranks and one rank at the same global batch give the same loss, the same
/// gradient after one step and the same parameters after 20 steps (mpirun --oversubscribe, W = 1...4),
/// and the tests catch the two classic bugs (negative controls).
final class DistributedEquivalenceTests: XCTestCase {
    static let work = NSTemporaryDirectory() + "cladmop-equivalence-\(getpid())"
    static var store: String { work + "/synthetic.store" }
    var cladmop: String { productsFolder.appendingPathComponent("cladmop").path }
    /// What the last `train` printed.
    var lastOutput = ""

    static let fixture = SuiteFixture()
    override class func setUp() {
        try? FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        fixture.run {
            let r = try runProduct("cladmop", ["synth", "--trials", "240", "--dim", "24", "--output", store, "--seed", "3",
                                               "--set", "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"])
            return r.status == 0 ? nil : r.output
        }
    }
    override func setUpWithError() throws { try Self.fixture.check() }

    override class func tearDown() { try? FileManager.default.removeItem(atPath: work) }

    /// Runs pretraining on W ranks; returns (loss at step 1, gradient of step 1, final parameters).
    /// `launcher`: a command that mpirun starts instead, with cladmop's path and arguments after it.
    func train(ranks: Int, steps: Int, extra: [String] = [], fault: String? = nil, mpiFlags: [String] = [],
               environment: [String: String] = [:], launcher: [String] = [], name: String) throws -> (loss: Double, gradient: [Float], parameters: [Float]) {
        let dir = Self.work + "/\(name)"
        try? FileManager.default.removeItem(atPath: dir)
        let gradientFile = dir + ".grad"
        var env = environment.merging(["CLADMOP_DUMP_GRADIENT": gradientFile]) { $1 }
        if let fault { env["CLADMOP_FAULT"] = fault }
        let args = ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", dir,
                    "--set", "data.synthetic=true", "--set", "data.feature_store=\(Self.store)",
                    "--set", "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv",
                    "--set", "train.max_steps=\(steps)", "--set", "train.epochs=10", "--set", "train.checksum_every=5"] + extra
        let r = try mpirun(np: ranks, executable: launcher.first ?? cladmop, arguments: launcher.dropFirst() + (launcher.isEmpty ? [] : [cladmop]) + args,
                           extraFlags: mpiFlags, environment: env)
        XCTAssertEqual(r.status, 0, r.output)
        lastOutput = r.output
        let metrics = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let first = try JSONSerialization.jsonObject(with: Data(metrics[0].utf8)) as! [String: Any]
        let gradient = try Data(contentsOf: URL(fileURLWithPath: gradientFile)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let checkpoint = dir + "/checkpoints/" + String(format: "step-%08d.safetensors", steps)
        let file = try SafetensorsFile(path: checkpoint)
        var parameters: [Float] = []
        for name in file.tensors.keys.sorted() where !name.hasPrefix("optimizer.") { parameters += try file.floats(name) }
        return (first["loss"] as! Double, gradient, parameters)
    }

    func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count)
        var d = 0.0, n = 0.0
        for i in a.indices { d += Double(a[i] - b[i]) * Double(a[i] - b[i]); n += Double(b[i]) * Double(b[i]) }
        return (d / max(n, 1e-30)).squareRoot()
    }

    func testOneStepAndTwentyStepsMatchSingleProcessForW2W3W4() throws {
        let one = try train(ranks: 1, steps: 1, name: "w1-1")
        let ref20 = try train(ranks: 1, steps: 20, name: "w1-20")
        for w in [2, 3, 4] {
            let r = try train(ranks: w, steps: 1, name: "w\(w)-1")
            XCTAssertEqual(r.loss, one.loss, accuracy: 1e-5 * abs(one.loss), "loss W=\(w)")
            let g = relativeDifference(r.gradient, one.gradient)
            XCTAssertLessThan(g, 1e-4, "gradient W=\(w)")
            let p = relativeDifference(try train(ranks: w, steps: 20, name: "w\(w)-20").parameters, ref20.parameters)
            XCTAssertLessThan(p, 1e-4, "parameters after 20 steps, W=\(w)")
            print("equivalence W=\(w): loss \(r.loss) vs \(one.loss), gradient rel diff \(g), parameters after 20 steps rel diff \(p)")
        }
    }

    /// train.precision = bf16: W = 2, 3 and 4 and a chunked step (GradCache, one row per chunk) give W = 1's loss and
    /// first-step gradient (every rank rounds the same GEMM inputs; the step applies the W factor after the all-reduce
    /// in bf16, since bf16(3 g) != 3 bf16(g): scaling the backward input as fp32 does gave W = 3 a 7.7e-3 gradient
    /// difference), and bf16 is really used: its gradient differs from fp32's by far more than the W-to-W difference.
    /// The gradient bound is 1e-5, a tenth of SPEC 5.3's 1e-4: measured 3.1e-7 to 3.4e-7 (fp32: 6.8e-7). Until the
    /// shared queries' dQ (a partial sum over a rank's trials) stayed fp32 through the query projection's backward it
    /// was rounded to bf16 per rank or chunk: 8.1e-5 (W = 2), 1.2e-4 (W = 4), 1.3e-4 (chunked).
    /// Parameters after 20 Adam steps, SPEC 5.3's 1e-4: at lr 1e-4 (the default and the paper's) measured 5e-9 /
    /// 3.3e-6 / 7.1e-6 (W = 2 / 3 / 4). At smoke.yaml's lr 1e-3, 8e-5 / 2.9e-4 / 3.2e-4: the first two steps agree to
    /// 1e-8, then a master weight 1 ulp apart rounds to another bf16 value (2^-8 relative) and the trajectories drift
    /// by about 1.5e-5 a step, most in the rows of the ICD embedding that Adam keeps moving after one sighting; bound
    /// 1e-3 there (docs/performance.md).
    func testBF16W2W3W4MatchSingleProcess() throws {
        try XCTSkipUnless(Precision.bf16Available, "no AVX512-BF16 here: bf16 falls back to fp32")
        let bf16 = ["--set", "train.precision=bf16"], paperRate = ["--set", "optimizer.lr=1e-4"]
        let one = try train(ranks: 1, steps: 1, extra: bf16, name: "bf16-w1-1")
        let ref20 = try train(ranks: 1, steps: 20, extra: bf16, name: "bf16-w1-20")
        let ref20PaperRate = try train(ranks: 1, steps: 20, extra: bf16 + paperRate, name: "bf16-w1-20-lr")
        let fp32 = try train(ranks: 1, steps: 1, name: "bf16-fp32-w1-1")
        let precisionEffect = relativeDifference(fp32.gradient, one.gradient)
        let chunked = try train(ranks: 1, steps: 1, extra: bf16 + ["--set", "train.chunk_size=1"], name: "bf16-w1-chunked")
        XCTAssertEqual(chunked.loss, one.loss, accuracy: 1e-5 * abs(one.loss), "loss, chunked")
        XCTAssertLessThan(relativeDifference(chunked.gradient, one.gradient), 1e-5, "gradient, one row per chunk")
        for w in [2, 3, 4] {
            let r = try train(ranks: w, steps: 1, extra: bf16, name: "bf16-w\(w)-1")
            let g = relativeDifference(r.gradient, one.gradient)
            let p = relativeDifference(try train(ranks: w, steps: 20, extra: bf16, name: "bf16-w\(w)-20").parameters, ref20.parameters)
            let pPaperRate = relativeDifference(try train(ranks: w, steps: 20, extra: bf16 + paperRate, name: "bf16-w\(w)-20-lr").parameters,
                                                ref20PaperRate.parameters)
            print("bf16 equivalence W=\(w): gradient rel diff \(g), parameters after 20 steps \(p) (lr 1e-3), \(pPaperRate) (lr 1e-4); bf16 vs fp32 gradient at W=1: \(precisionEffect)")
            XCTAssertEqual(r.loss, one.loss, accuracy: 1e-5 * abs(one.loss), "loss W=\(w)")
            XCTAssertLessThan(g, 1e-5, "gradient W=\(w)")
            XCTAssertLessThan(pPaperRate, 1e-4, "parameters after 20 steps at lr 1e-4, W=\(w)")
            XCTAssertLessThan(p, 1e-3, "parameters after 20 steps at lr 1e-3, W=\(w) (see above)")
            XCTAssertGreaterThan(precisionEffect, 10 * g, "bf16 must change the gradient more than W does (else it did not run)")
        }
    }

    /// A mixed cluster: train.precision = bf16 on W = 2 where rank 1 has no AVX512-BF16 (CLADMOP_FORCE_NO_BF16 on that
    /// rank only). Every rank computes in fp32 (one warning: 1 of the 2 ranks), so the first-step gradient and the
    /// parameters after 20 steps are W = 1 fp32's to 1e-4. Each rank used to resolve its own precision: bf16 scales the
    /// gradient after the all-reduce, fp32 before it, so rank 1 stepped with half the gradient and the replicas parted
    /// (exit 3, "replicas diverged", at the first replica checksum).
    func testMixedBF16RanksAgreeOnFP32() throws {
        try XCTSkipUnless(Precision.bf16Available, "no AVX512-BF16 here: every rank falls back to fp32 anyway")
        let fp32 = try train(ranks: 1, steps: 20, name: "mixed-fp32-w1")
        let rank1WithoutBF16 = ["/bin/sh", "-c", "[ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && export CLADMOP_FORCE_NO_BF16=1; exec \"$0\" \"$@\""]
        let mixed = try train(ranks: 2, steps: 20, extra: ["--set", "train.precision=bf16"], launcher: rank1WithoutBF16, name: "mixed-w2")
        XCTAssertTrue(lastOutput.contains("train.precision = bf16: 1 of the 2 ranks run on a CPU without AVX512-BF16"), lastOutput)
        let g = relativeDifference(mixed.gradient, fp32.gradient), p = relativeDifference(mixed.parameters, fp32.parameters)
        print("mixed bf16 / no-bf16 ranks vs W=1 fp32: gradient rel diff \(g), parameters after 20 steps \(p)")
        XCTAssertEqual(mixed.loss, fp32.loss, accuracy: 1e-5 * abs(fp32.loss))
        XCTAssertLessThan(g, 1e-4)
        XCTAssertLessThan(p, 1e-4)
    }

    func testSGDTwentyStepsMatch() throws {
        let sgd = ["--set", "optimizer.name=sgd", "--set", "optimizer.lr=0.05"]
        let a = try train(ranks: 1, steps: 20, extra: sgd, name: "sgd1")
        let b = try train(ranks: 3, steps: 20, extra: sgd, name: "sgd3")
        let p = relativeDifference(b.parameters, a.parameters)
        print("equivalence SGD W=3: parameters after 20 steps rel diff \(p)")
        XCTAssertLessThan(p, 1e-4)
    }

    /// GradCache: two passes over chunks of 2 rows (of the 6 per rank), the loss in blocks of 5 rows of the 12 x 12
    /// logits, give the one-pass step: same gradient, same parameters after 10 Adam steps (W = 2).
    func testChunkedTwoPassTrainingMatchesOnePass() throws {
        let one = try train(ranks: 2, steps: 10, name: "onepass")
        let chunked = try train(ranks: 2, steps: 10, extra: ["--set", "train.chunk_size=2", "--set", "train.loss_tile_rows=5"], name: "chunked")
        let g = relativeDifference(chunked.gradient, one.gradient), p = relativeDifference(chunked.parameters, one.parameters)
        print("chunked (chunk 2, loss tiles of 5) vs one pass, W=2: loss \(chunked.loss) vs \(one.loss), gradient rel diff \(g), parameters after 10 steps rel diff \(p)")
        XCTAssertEqual(chunked.loss, one.loss, accuracy: 1e-6 * abs(one.loss))
        XCTAssertLessThan(g, 1e-5)
        XCTAssertLessThan(p, 1e-5)
    }

    func testOverTCPTransport() throws {
        let a = try train(ranks: 1, steps: 1, name: "tcp1")
        let b = try train(ranks: 2, steps: 1, mpiFlags: ["--mca", "btl", "self,tcp"], name: "tcp2")
        XCTAssertLessThan(relativeDifference(b.gradient, a.gradient), 1e-4)
    }

    func testNegativeControlsAreCaught() throws {
        let one = try train(ranks: 1, steps: 1, name: "neg1")
        let dropped = try train(ranks: 2, steps: 1, fault: "drop_remote_columns", name: "neg-drop")
        let unscaled = try train(ranks: 2, steps: 1, fault: "no_world_scale", name: "neg-scale")
        let dDrop = relativeDifference(dropped.gradient, one.gradient), dScale = relativeDifference(unscaled.gradient, one.gradient)
        print("negative controls: remote column term dropped -> gradient rel diff \(dDrop); no W scaling -> \(dScale)")
        XCTAssertGreaterThan(dDrop, 1e-2)
        XCTAssertGreaterThan(dScale, 0.4)
        XCTAssertEqual(dropped.loss, one.loss, accuracy: 1e-5 * abs(one.loss), "the loss alone cannot see these bugs")
    }

    /// Runs `steps` more steps from the newest checkpoint of run `name`.
    func resume(_ name: String, ranks: Int, steps: Int, environment: [String: String] = [:]) throws -> [Float] {
        let dir = Self.work + "/\(name)"
        let args = ["pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", dir, "--resume", "auto",
                    "--set", "data.synthetic=true", "--set", "data.feature_store=\(Self.store)",
                    "--set", "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv",
                    "--set", "train.max_steps=\(steps)", "--set", "train.epochs=10", "--set", "train.checksum_every=5"]
        let r = try mpirun(np: ranks, executable: cladmop, arguments: args, environment: environment)
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("resume: \(dir)/checkpoints/step-"), r.output)
        let file = try SafetensorsFile(path: dir + "/checkpoints/" + String(format: "step-%08d.safetensors", steps))
        var parameters: [Float] = []
        for name in file.tensors.keys.sorted() where !name.hasPrefix("optimizer.") { parameters += try file.floats(name) }
        return parameters
    }

    func testResumeContinuesTheTrajectory() throws {
        // Same world size: 8 + 8 steps equal 16 straight steps to 1e-6 (in practice bit for bit).
        let straight = try train(ranks: 2, steps: 16, name: "straight2")
        _ = try train(ranks: 2, steps: 8, name: "resumed2")
        let same = relativeDifference(try resume("resumed2", ranks: 2, steps: 16), straight.parameters)
        print("resume on the same world size (8 + 8 steps on W=2 vs 16 straight): parameters rel diff \(same)")
        XCTAssertLessThan(same, 1e-6)
        // Another world size: 8 steps on W=2, then 8 on W=3. The split of the batch changes the float rounding of
        // the gradient (~1e-7); the bound holds because no parameter gets a pure-noise gradient that Adam would
        // amplify (the attention key bias's gradient is exactly 0, see MultiHeadAttention.backward).
        _ = try train(ranks: 2, steps: 8, name: "resumed23")
        let other = relativeDifference(try resume("resumed23", ranks: 3, steps: 16), straight.parameters)
        print("resume on another world size (8 on W=2 + 8 on W=3 vs 16 straight on W=2): parameters rel diff \(other)")
        XCTAssertLessThan(other, 1e-6)
        // Its report says which ranks ran which steps (an eighth probe: it had said 3 ranks for all 16).
        let report = try String(contentsOfFile: Self.work + "/resumed23/report.md", encoding: .utf8)
        XCTAssertTrue(report.contains("2 rank(s) for logged steps 1-8, 3 rank(s) for logged steps 9-16"), report)
    }

    /// Every fp32 GEMM through oneDNN (`CLADMOP_GEMM_BACKEND=onednn`: the smoke model's GEMMs are below the shape
    /// rule's bound, so by default they run on OpenBLAS): W = 2 gives W = 1's loss, gradient and parameters after 20
    /// steps to 1e-4, 8 + 8 resumed steps equal 16 straight ones to 1e-6, and oneDNN really computed them (its
    /// gradient differs from OpenBLAS's, which sums in another order).
    func testOneDNNGEMMsKeepEquivalenceAndResume() throws {
        let dnnl = ["CLADMOP_GEMM_BACKEND": "onednn"]
        let one = try train(ranks: 1, steps: 20, environment: dnnl, name: "dnnl-w1")
        let two = try train(ranks: 2, steps: 20, environment: dnnl, name: "dnnl-w2")
        let g = relativeDifference(two.gradient, one.gradient), p = relativeDifference(two.parameters, one.parameters)
        XCTAssertEqual(two.loss, one.loss, accuracy: 1e-5 * abs(one.loss))
        XCTAssertLessThan(g, 1e-4, "gradient W=2 vs W=1 (oneDNN)")
        XCTAssertLessThan(p, 1e-4, "parameters after 20 steps W=2 vs W=1 (oneDNN)")
        let straight = try train(ranks: 2, steps: 16, environment: dnnl, name: "dnnl-straight")
        _ = try train(ranks: 2, steps: 8, environment: dnnl, name: "dnnl-resumed")
        let resumed = relativeDifference(try resume("dnnl-resumed", ranks: 2, steps: 16, environment: dnnl), straight.parameters)
        XCTAssertLessThan(resumed, 1e-6, "8 + 8 resumed steps vs 16 straight (oneDNN)")
        let blas = try train(ranks: 1, steps: 1, environment: ["CLADMOP_GEMM_BACKEND": "openblas"], name: "dnnl-blas-w1")
        let libraries = relativeDifference(blas.gradient, one.gradient)
        print("oneDNN GEMMs: W=2 vs W=1 gradient \(g), parameters after 20 steps \(p); resumed vs straight \(resumed); OpenBLAS vs oneDNN gradient \(libraries)")
        XCTAssertGreaterThan(libraries, 0, "CLADMOP_GEMM_BACKEND=onednn did not change any GEMM")
        XCTAssertLessThan(libraries, 1e-4)
    }

    /// Overlapped all-reduce (`train.bucket_mb` > 0): buckets of 131 floats (smaller than almost every tensor, so tensors
    /// span buckets), 13,107 floats (some tensors larger, some buckets holding many) and 2 MiB (one bucket larger than
    /// the whole 279,433-float gradient) give the blocking path's gradient and parameters after 10 Adam steps, bit for
    /// bit at W = 2 (a + b is a + b in either order) and to 1e-6 at W = 3; and W = 1's to the bounds above. 1e-6 MiB
    /// (a float per bucket, raised to 4,096 buckets) as well: it had started a reduction per float and never finished.
    func testBucketedAllReduceEqualsBlocking() throws {
        let steps = 10, sizes = ["0.0005", "0.05", "2", "1e-6"]
        let one = try train(ranks: 1, steps: steps, name: "bucket-w1")
        for w in [2, 3] {
            let blocking = try train(ranks: w, steps: steps, extra: ["--set", "train.bucket_mb=0"], name: "bucket-w\(w)-blocking")
            for mb in sizes {
                let r = try train(ranks: w, steps: steps, extra: ["--set", "train.bucket_mb=\(mb)"], name: "bucket-w\(w)-\(mb)")
                let g = relativeDifference(r.gradient, blocking.gradient), p = relativeDifference(r.parameters, blocking.parameters)
                let bitwise = r.gradient == blocking.gradient && r.parameters == blocking.parameters
                print("bucketed all-reduce W=\(w), bucket_mb \(mb): vs blocking gradient rel diff \(g), parameters after \(steps) steps \(p)\(bitwise ? " (bit for bit)" : ""); vs W=1 parameters \(relativeDifference(r.parameters, one.parameters))")
                if w == 2 { XCTAssertTrue(bitwise, "W=2 bucket_mb \(mb): not bit-identical to the blocking all-reduce") }
                XCTAssertLessThan(g, 1e-6, "gradient W=\(w) bucket_mb \(mb)")
                XCTAssertLessThan(p, 1e-6, "parameters W=\(w) bucket_mb \(mb)")
                XCTAssertEqual(r.loss, one.loss, accuracy: 1e-5 * abs(one.loss))
                XCTAssertLessThan(relativeDifference(r.gradient, one.gradient), 1e-4, "gradient vs W=1, W=\(w) bucket_mb \(mb)")
                XCTAssertLessThan(relativeDifference(r.parameters, one.parameters), 1e-4, "parameters vs W=1, W=\(w) bucket_mb \(mb)")
            }
        }
    }

    /// GradCache chunks with buckets (started during the last chunk's backward) equal the blocking chunked step; and
    /// the negative control: buckets started before backward has written them (CLADMOP_FAULT=buckets_before_backward)
    /// give a different gradient, so the comparison above can fail.
    func testBucketedAllReduceWithChunksAndNegativeControl() throws {
        let chunked = ["--set", "train.chunk_size=2"]
        let blocking = try train(ranks: 2, steps: 6, extra: chunked + ["--set", "train.bucket_mb=0"], name: "bucket-chunk-blocking")
        let bucketed = try train(ranks: 2, steps: 6, extra: chunked + ["--set", "train.bucket_mb=0.01"], name: "bucket-chunk")
        XCTAssertEqual(bucketed.gradient, blocking.gradient, "chunked: gradient not bit-identical")
        XCTAssertEqual(bucketed.parameters, blocking.parameters, "chunked: parameters not bit-identical")
        let dir = Self.work + "/bucket-early"
        try? FileManager.default.removeItem(atPath: dir)
        let r = try mpirun(np: 2, executable: cladmop, arguments: [
            "pretrain", "--config", repositoryRoot + "/configs/smoke.yaml", "--run-dir", dir,
            "--set", "data.synthetic=true", "--set", "data.feature_store=\(Self.store)",
            "--set", "data.icd_hierarchy=\(repositoryRoot)/data/icd10/icd10cm_2025_hierarchy.tsv",
            "--set", "train.max_steps=1", "--set", "train.bucket_mb=0.01"],
            environment: ["CLADMOP_FAULT": "buckets_before_backward", "CLADMOP_DUMP_GRADIENT": dir + ".grad"])
        XCTAssertEqual(r.status, 0, r.output)
        let early = try Data(contentsOf: URL(fileURLWithPath: dir + ".grad")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let reference = try train(ranks: 2, steps: 1, extra: ["--set", "train.bucket_mb=0"], name: "bucket-early-reference")
        let d = relativeDifference(early, reference.gradient)
        print("negative control: buckets started before backward -> gradient rel diff \(d)")
        XCTAssertGreaterThan(d, 1e-2)
    }
}
