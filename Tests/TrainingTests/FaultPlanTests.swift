import Foundation
import XCTest
import Support
import Training

/// CLADMOP_FAULT's forms (FaultPlan.fromEnvironment, the one parser): each accepted form with its meaning, each
/// malformed one refused (a misspelt fault would run the command without it, and the test relying on it would pass).
final class FaultPlanTests: XCTestCase {
    func plan(_ value: String?, _ more: [String: String] = [:]) throws -> FaultPlan {
        var env = more
        if let value { env["CLADMOP_FAULT"] = value }
        return try FaultPlan.fromEnvironment(env)
    }

    func testEveryFormParsesToItsFault() throws {
        let none = try plan(nil)
        XCTAssertNil(none.stepFault); XCTAssertNil(none.checkpointCrash); XCTAssertFalse(none.localGradientOnly)
        XCTAssertNil(try plan("").stepFault, "cleared: no fault")
        XCTAssertTrue(try plan("drop_remote_columns").localGradientOnly)
        XCTAssertTrue(try plan("no_world_scale").noWorldScale)
        XCTAssertTrue(try plan("buckets_before_backward").bucketsBeforeBackward)
        for (text, kind) in [("crash", FaultPlan.StepFault.crash), ("throw", .throwError), ("stall", .stall)] {
            let f = try XCTUnwrap(try plan("\(text):1:7").stepFault)
            XCTAssertEqual(f.kind, kind); XCTAssertEqual(f.rank, 1); XCTAssertEqual(f.step, 7)
        }
        let anyStep = try XCTUnwrap(try plan("checkpoint_crash:between").checkpointCrash)
        XCTAssertEqual(anyStep.stage, .between); XCTAssertNil(anyStep.step)
        let step0 = try XCTUnwrap(try plan("checkpoint_crash:pointer:0").checkpointCrash)
        XCTAssertEqual(step0.stage, .pointer); XCTAssertEqual(step0.step, 0)
        XCTAssertEqual(try plan("file_size_limit:4096").fileSizeLimit, 4096)
        let stop = try XCTUnwrap(try plan("stop:1:startup").stop)
        XCTAssertEqual(stop.rank, 1); XCTAssertEqual(stop.activity, "startup")
        XCTAssertEqual(try plan("linger:3").linger, 3)
        XCTAssertEqual(try plan("diverge:0").divergeAfter, 0)
        XCTAssertEqual(try plan(nil, ["CLADMOP_DUMP_GRADIENT": "/tmp/g"]).dumpGradient, "/tmp/g")
    }

    /// CLADMOP_FAULT_ONCE: the step fault fires only while the marker file does not exist (a supervised restart runs
    /// clean); the value is still checked when it exists.
    func testOnceMarker() throws {
        let marker = NSTemporaryDirectory() + "cladmop-once-\(getpid())"
        unlink(marker)
        defer { unlink(marker) }
        let first = try plan("crash:0:3", ["CLADMOP_FAULT_ONCE": marker])
        XCTAssertNotNil(first.stepFault); XCTAssertEqual(first.onceMarker, marker)
        XCTAssertTrue(FileManager.default.createFile(atPath: marker, contents: nil))
        XCTAssertNil(try plan("crash:0:3", ["CLADMOP_FAULT_ONCE": marker]).stepFault)
        XCTAssertThrowsError(try plan("crash:0", ["CLADMOP_FAULT_ONCE": marker]))
    }

    func testMalformedValuesAreRefused() {
        for bad in ["crash", "crash:1", "crash:1:0", "crash:-1:3", "crash:1:3:4", "crash::3", "throw:a:1", "stall:1:1.5",
                    "checkpoint_crash", "checkpoint_crash:during", "checkpoint_crash:before:-1", "checkpoint_crash:before:",
                    "file_size_limit", "file_size_limit:-1", "stop:0", "stop:0:job", "stop:-1:training", "linger:-1",
                    "linger:4294967296", "diverge:", "diverge:x", "no_world_scale:1", "drop_remote_columns:", "crash:1:3:",
                    "Crash:1:3", " crash:1:3", "unknown"] {
            XCTAssertThrowsError(try plan(bad), bad) { error in
                XCTAssertTrue("\(error)".hasPrefix("CLADMOP_FAULT=\(bad): expected drop_remote_columns"), "\(error)")
            }
        }
    }
}
