import Foundation
import XCTest
@testable import Support

/// `MemoryLimit`: the memory a process may use is the machine's, or a control group's lower limit, read from a tree
/// of files laid out like /sys/fs/cgroup (here a temporary folder) for the group /proc/self/cgroup names, where
/// /proc/self/mountinfo says each hierarchy is mounted and which group its root shows (both written by the tests).
/// (The memory check's message under a real control group: CLITests.testTheMemoryCheckHonoursTheControlGroupsLimit.)
final class MemoryLimitTests: XCTestCase {
    var dir = ""
    let gib = 1_073_741_824.0

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cladmop-cgroup-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/root", withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes `text` at `path` under the fake tree, making its folders.
    func put(_ path: String, _ text: String) throws {
        let file = dir + "/root" + path
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: file, atomically: true, encoding: .utf8)
    }

    /// A mountinfo line mounting the hierarchy of `type` ("cgroup2", or "cgroup" with `options`) at `point` (under the
    /// fake tree, escaped as the kernel writes it), showing the group `root` at its root.
    func mount(_ type: String, root: String = "/", at point: String, options: String = "rw") -> String {
        let escaped = (dir + "/root" + point).replacingOccurrences(of: " ", with: "\\040")
        return "35 31 0:32 \(root) \(escaped) rw,nosuid,relatime shared:9 - \(type) \(type) \(options)\n"
    }

    func limit(_ procCgroup: String, _ mountinfo: String, physical: Double = 64 * 1_073_741_824.0) throws -> MemoryLimit {
        try procCgroup.write(toFile: dir + "/cgroup", atomically: true, encoding: .utf8)
        try mountinfo.write(toFile: dir + "/mountinfo", atomically: true, encoding: .utf8)
        return MemoryLimit.current(physical: physical, procCgroup: dir + "/cgroup", mountinfo: dir + "/mountinfo")
    }

    /// cgroup v2 (Slurm, systemd): the job's own group says "max", the group above it caps at 4 GiB.
    func testAV2LimitOfAnAncestorGroupCounts() throws {
        try put("/fs/slurm/job_12/step_0/memory.max", "max\n")
        try put("/fs/slurm/job_12/memory.max", "4294967296\n")
        try put("/fs/slurm/memory.max", "max\n")
        let l = try limit("0::/slurm/job_12/step_0\n", "22 1 0:20 / /proc rw - proc proc rw\n" + mount("cgroup2", at: "/fs"))
        XCTAssertEqual(l.bytes, 4 * gib)
        XCTAssertEqual(l.source, "the control group /slurm/job_12 (memory.max)")
    }

    /// cgroup v1 (Docker with --memory on an older host), CRLF, a combined controller list, other hierarchies listed
    /// around it; the smallest limit on the way up wins, and v1's "unlimited" (2^63 rounded to a page) limits nothing.
    func testAV1MemoryHierarchyIsRead() throws {
        try put("/mem/docker/abc/memory.limit_in_bytes", "2147483648\r\n")
        try put("/mem/docker/memory.limit_in_bytes", "9223372036854771712\n")
        try put("/cpu/docker/abc/memory.limit_in_bytes", "1024\n")      // not the memory hierarchy: ignored
        let l = try limit("12:cpu,cpuacct:/docker/abc\r\n4:memory,hugetlb:/docker/abc\r\n0::/\r\n",
                          mount("cgroup", at: "/cpu", options: "rw,cpu,cpuacct") + mount("cgroup", at: "/mem", options: "rw,memory,hugetlb"))
        XCTAssertEqual(l.bytes, 2 * gib)
        XCTAssertEqual(l.source, "the control group /docker/abc (memory.limit_in_bytes)")
    }

    /// A container without a cgroup namespace: the mount's root is the container's own group while /proc/self/cgroup
    /// names the process's group from the host's root, here a Slurm job inside the container: the job's limit is read
    /// below the mount (a guess from the path alone missed it), and the container's own at the mount point.
    func testAGroupBelowAContainersOwnGroupIsFoundThroughTheMountsRoot() throws {
        try put("/mem/memory.limit_in_bytes", "8589934592\n")
        try put("/mem/slurm/job_12/memory.limit_in_bytes", "3221225472\n")
        let l = try limit("4:memory:/docker/0123/slurm/job_12\n", mount("cgroup", root: "/docker/0123", at: "/mem", options: "rw,memory"))
        XCTAssertEqual(l.bytes, 3 * gib)
        XCTAssertEqual(l.source, "the control group /docker/0123/slurm/job_12 (memory.limit_in_bytes)")
        // The container's own group alone, at the mount point; a mount point with a space, escaped in mountinfo.
        try put("/my mem/memory.max", "1073741824")
        let own = try limit("0::/\n", mount("cgroup2", at: "/my mem"))
        XCTAssertEqual(own, MemoryLimit(bytes: gib, source: "the control group / (memory.max)"))
        // A group outside the mount's root (another namespace's view) is not read.
        XCTAssertEqual(try limit("4:memory:/elsewhere\n", mount("cgroup", root: "/docker/0123", at: "/mem", options: "rw,memory")).bytes, 64 * gib)
        // Nor one that a cgroup namespace shows above its root ("/../x"): a file beside the mount is not a limit.
        try put("/x/memory.max", "1048576\n")
        try put("/fs/memory.max", "max\n")
        XCTAssertEqual(try limit("0::/../x\n", mount("cgroup2", at: "/fs")).bytes, 64 * gib)
    }

    /// No limit below the machine's: "max", non-numeric files, a limit above the physical memory, a hierarchy that
    /// is not mounted, no /proc/self/cgroup or mountinfo at all: the machine's memory.
    func testWithoutALowerLimitTheMachinesMemoryCounts() throws {
        try put("/fs/a/memory.max", "max\n")
        try put("/fs/a/b/memory.max", "12 GiB\n")
        try put("/fs/memory.max", "\(Int(200 * gib))\n")
        let l = try limit("0::/a/b\n", mount("cgroup2", at: "/fs"), physical: 16 * gib)
        XCTAssertEqual(l, MemoryLimit(bytes: 16 * gib, source: "this machine's memory"))
        try put("/fs/a/b/memory.max", "1073741824\n")
        XCTAssertEqual(try limit("0::/a/b\n", mount("cgroup2", at: "/fs"), physical: 16 * gib).bytes, gib)
        XCTAssertEqual(try limit("0::/a/b\n", mount("cgroup", at: "/fs", options: "rw,cpu"), physical: 16 * gib).bytes, 16 * gib)
        XCTAssertEqual(MemoryLimit.current(physical: 8 * gib, procCgroup: dir + "/none", mountinfo: dir + "/mountinfo").bytes, 8 * gib)
    }
}
