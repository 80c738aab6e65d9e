import Foundation
import NN
import TestSupport
import Training
import XCTest

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The PyTorch loader (python/cladmop_torch) against `cladmop embed`, without torch in CI (the llm.c way):
/// Tests/Fixtures/make_torch_loader.py, run by hand with torch, loaded the committed small checkpoint
/// (Tests/Fixtures/torch_loader/run) through the package, built its inputs from the committed store and wrote
/// f_DM and the pooled U^{D,M} in float64 (f_dm_torch.safetensors). Here `cladmop embed` runs the same
/// checkpoint on the same trials; every row must agree to 1e-4 relative (the bound) and the trials
/// must come in the same order.
final class TorchLoaderFixtureTests: XCTestCase {
    let fixture = repoRoot + "/Tests/Fixtures/torch_loader"

    /// max over rows of |a_i - b_i| / |b_i| for (rows, width) matrices.
    func worstRowRelative(_ a: [Float], _ b: [Float], width: Int) -> Double {
        var worst = 0.0
        for r in 0..<(b.count / width) {
            var d = 0.0, n = 0.0
            for k in r * width..<(r + 1) * width { d += Double(a[k] - b[k]) * Double(a[k] - b[k]); n += Double(b[k]) * Double(b[k]) }
            worst = max(worst, (d / max(n, 1e-30)).squareRoot())
        }
        return worst
    }

    /// The package reads the checkpoint versions cladmop reads (version 6 checkpoints had been refused by it, "expected a
    /// cladmop-checkpoint of version 2 to 5"): its READABLE_VERSIONS is CheckpointMeta.readableVersions.
    func testThePyTorchPackageReadsEveryCheckpointVersion() throws {
        let source = try String(contentsOfFile: repoRoot + "/python/cladmop_torch/checkpoint.py", encoding: .utf8)
        let versions = CheckpointMeta.readableVersions
        XCTAssertTrue(source.contains("READABLE_VERSIONS = range(\(versions.lowerBound), \(versions.upperBound + 1))"),
                      "python/cladmop_torch/checkpoint.py must read versions \(versions) (READABLE_VERSIONS)")
        XCTAssertTrue(source.contains("not in READABLE_VERSIONS"))
    }

    func testEmbedEqualsThePyTorchPackage() throws {
        let dir = NSTemporaryDirectory() + "cladmop-torchloader-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Copies, so that nothing can be written next to the fixture; the store matches valid.csv by name and bytes.
        for name in ["valid.csv", "valid.store"] { try FileManager.default.copyItem(atPath: fixture + "/" + name, toPath: dir + "/" + name) }
        let out = dir + "/embed.safetensors"
        let run = try mpirun(np: 2, executable: releaseOrDebugProduct("cladmop"), arguments: [
            "embed", "--checkpoint", fixture + "/run", "--data", dir + "/valid.csv", "--output", out,
            "--set", "data.feature_store=\(dir)/valid.store",
            "--set", "encoder.model_dir=\(repoRoot)/models/all-MiniLM-L6-v2",
            "--set", "data.icd_hierarchy=\(repoRoot)/data/icd10/icd10cm_2025_hierarchy.tsv"], timeout: 300)
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertFalse(run.output.contains("featurizing"), "the committed store holds valid.csv: \(run.output)")
        let ours = try SafetensorsFile(path: out), torch = try SafetensorsFile(path: fixture + "/f_dm_torch.safetensors")
        XCTAssertEqual(ours.metadata["nctids"], torch.metadata["nctids"])
        XCTAssertEqual(torch.metadata["nctids"]?.split(separator: ",").count, 8)
        for (name, width) in [("f_dm", 384), ("pooled", 16)] {
            let a = try ours.floats(name), b = try torch.floats(name)
            XCTAssertEqual(ours.tensors[name]?.shape, [8, width], name)
            XCTAssertEqual(a.count, b.count, name)
            let worst = worstRowRelative(a, b, width: width)
            XCTAssertLessThan(worst, 1e-4, "\(name): worst row-relative difference \(worst)")
            // The bound separates: the same rows in another order (trials one apart) are far outside it.
            let rotated = Array(b[width...] + b[..<width])
            XCTAssertGreaterThan(worstRowRelative(a, rotated, width: width), 1e-2, name)
            print("TorchLoaderFixtureTests: \(name) worst row-relative difference \(worst)")
        }
    }
}
