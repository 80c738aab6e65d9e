import Foundation
import TestSupport
import XCTest

/// The test helpers' time limit (Tests/Support/MPIRun.swift): a command killed at it takes every process it started
/// along. Killing the command alone had left a child (Launch/setup's `swift build`) holding the output pipe, and the
/// test waiting past its limit.
final class CommandTimeLimitTests: XCTestCase {
    func testACommandKilledAtItsTimeLimitTakesItsChildrenAlong() throws {
        let dir = NSTemporaryDirectory() + "cladmop-time-limit-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // One child in the command's process group, one in a session of its own (out of reach of a group kill): both
        // hold the output pipe.
        let script = "sleep 600 & echo $! > \(dir)/group.pid; setsid sleep 600 & echo $! > \(dir)/session.pid; wait"
        let r = try runCommand("/bin/bash", ["-c", script], timeout: 2)
        XCTAssertLessThan(r.seconds, 10, "returned \(r.seconds) s after a time limit of 2 s: \(r.output)")
        XCTAssertTrue(r.output.contains("killed at the time limit of 2 s"), r.output)
        for name in ["group", "session"] {
            let text = try String(contentsOfFile: "\(dir)/\(name).pid", encoding: .utf8)
            let pid = try XCTUnwrap(pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), text)
            XCTAssertTrue(ended(pid), "the child in its \(name) (pid \(pid)) outlived the command's kill")
            if !ended(pid) { kill(pid, SIGKILL) }
        }
    }

    /// Whether `pid` has ended (gone, or a zombie its new parent has not reaped yet), waiting up to 5 s.
    private func ended(_ pid: pid_t) -> Bool {
        for _ in 0..<50 {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let name = stat.lastIndex(of: ")") else { return true }
            if stat[stat.index(after: name)...].split(separator: " ").first == "Z" { return true }
            usleep(100_000)
        }
        return false
    }
}
