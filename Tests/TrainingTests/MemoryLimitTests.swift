import Foundation
import XCTest
@testable import Support

/// `MemoryLimit`: the memory a process may use is the machine's, or a control group's lower limit, read from a tree
/// of files laid out like /sys/fs/cgroup (here a temporary folder) for the group /proc/self/cgroup names.
/// (The memory check's message under a real control group: CLITests.testTheMemoryCheckHonoursTheControlGroupsLimit.)
final class MemoryLimitTests: XCTestCase {
    var dir = ""
    let gib = 1_073_741_824.0

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cladmop-cgroup-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/root", withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes `text` at `path` under the fake cgroup root, making its folders.
    func put(_ path: String, _ text: String) throws {
        let file = dir + "/root" + path
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
    }

    func limit(_ procCgroup: String, physical: Double = 64 * 1_073_741_824.0) throws -> MemoryLimit {
        try procCgroup.write(toFile: dir + "/cgroup", atomically: true, encoding: .utf8)
        return MemoryLimit.current(physical: physical, procCgroup: dir + "/cgroup", cgroupRoot: dir + "/root")
    }

    /// cgroup v2 (Slurm, systemd): the job's own group says "max", the group above it caps at 4 GiB.
    func testAV2LimitOfAnAncestorGroupCounts() throws {
        try put("/slurm/job_12/step_0/memory.max", "max\n")
        try put("/slurm/job_12/memory.max", "4294967296\n")
        try put("/slurm/memory.max", "max\n")
        let l = try limit("0::/slurm/job_12/step_0\n")
        XCTAssertEqual(l.bytes, 4 * gib)
        XCTAssertEqual(l.source, "the control group /slurm/job_12 (memory.max)")
    }

    /// cgroup v1 (Docker with --memory on an older host), CRLF and other hierarchies listed around it; the smallest
    /// limit on the way up wins, and v1's "unlimited" (2^63 rounded to a page) limits nothing.
    func testAV1MemoryHierarchyIsRead() throws {
        try put("/memory/docker/abc/memory.limit_in_bytes", "2147483648\r\n")
        try put("/memory/docker/memory.limit_in_bytes", "9223372036854771712\n")
        try put("/cpu/docker/abc/memory.limit_in_bytes", "1024\n")      // not the memory hierarchy: ignored
        let l = try limit("12:cpu,cpuacct:/docker/abc\r\n4:memory:/docker/abc\r\n0::/\r\n")
        XCTAssertEqual(l.bytes, 2 * gib)
        XCTAssertEqual(l.source, "the control group /docker/abc (memory.limit_in_bytes)")
    }

    /// Inside a container the mount's root is the container's own group: the path seen from outside does not exist
    /// below it, and the root's file is the limit. The hybrid layout's v2 mount (/sys/fs/cgroup/unified) is read too.
    func testAContainersOwnGroupAtTheMountsRootAndTheHybridLayout() throws {
        try put("/memory/memory.limit_in_bytes", "3221225472\n")
        XCTAssertEqual(try limit("4:memory:/docker/0123456789\n").bytes, 3 * gib)
        try FileManager.default.removeItem(atPath: dir + "/root/memory")
        try put("/unified/job/memory.max", "1073741824")
        let l = try limit("4:memory:/\n0::/job\n")
        XCTAssertEqual(l.bytes, gib)
        XCTAssertEqual(l.source, "the control group /job (memory.max)")
    }

    /// No limit below the machine's: "max", unreadable or non-numeric files, a limit above the physical memory, no
    /// /proc/self/cgroup at all: the machine's memory.
    func testWithoutALowerLimitTheMachinesMemoryCounts() throws {
        try put("/a/memory.max", "max\n")
        try put("/a/b/memory.max", "12 GiB\n")
        try put("/memory.max", "\(Int(200 * gib))\n")
        let l = try limit("0::/a/b\n", physical: 16 * gib)
        XCTAssertEqual(l, MemoryLimit(bytes: 16 * gib, source: "this machine's memory"))
        XCTAssertEqual(MemoryLimit.current(physical: 8 * gib, procCgroup: dir + "/none", cgroupRoot: dir + "/root").bytes, 8 * gib)
        // The real process: never above the machine's memory, and positive.
        let real = MemoryLimit.current()
        XCTAssertGreaterThan(real.bytes, 0)
        XCTAssertLessThanOrEqual(real.bytes, Double(ProcessInfo.processInfo.physicalMemory))
    }
}
