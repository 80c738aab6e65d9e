import Foundation

/// Runs `mpirun -np N [flags] EXECUTABLE ARGS` with a wall-clock limit and returns its status, output
/// and duration. Root and oversubscription flags are added as Launch/ adds them.
public func mpirun(np: Int, executable: String, arguments: [String], extraFlags: [String] = [],
                   environment: [String: String] = [:], timeout: Double = 120) throws -> (status: Int32, output: String, seconds: Double) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    var flags = ["mpirun", "-np", "\(np)", "--oversubscribe"]
    if getuid() == 0 { flags.append("--allow-run-as-root") }
    var env = ProcessInfo.processInfo.environment
    env["OPENBLAS_NUM_THREADS"] = "1"
    var exports = ["-x", "OPENBLAS_NUM_THREADS"]
    for (k, v) in environment { env[k] = v; exports += ["-x", k] }
    process.environment = env
    process.arguments = flags + extraFlags + exports + [executable] + arguments
    return try runToEnd(process, timeout: timeout)
}

final class OutputBox: @unchecked Sendable { var data = Data() }

/// Runs `process` with its output and error in one pipe until it ends or `timeout` seconds pass. At the time limit the
/// command and every process below it are killed (`killTree`): killing the command alone left its children (ranks, a
/// `swift build` that Launch/setup started) holding the pipe, and the test waiting past its limit. A command that ends by
/// itself is not cleaned up after (a cluster's daemons may be meant to outlive it): its output is awaited for at most 60 s.
func runToEnd(_ process: Process, timeout: Double) throws -> (status: Int32, output: String, seconds: Double) {
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let start = Date()
    try process.run()
    let box = OutputBox()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue(label: "command-output").async { box.data = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }
    while process.isRunning && Date().timeIntervalSince(start) < timeout { usleep(20_000) }
    let timedOut = process.isRunning
    if timedOut { killTree(process.processIdentifier) }
    process.waitUntilExit()
    var output: String
    if done.wait(timeout: .now() + (timedOut ? 10 : 60)) == .success {
        output = String(decoding: box.data, as: UTF8.self)
    } else {
        output = "(no output: a process the command started still held its output open \(timedOut ? 10 : 60) s after the command ended)"
    }
    if timedOut { output += "\n(killed at the time limit of \(Int(timeout)) s, with every process it had started)" }
    return (process.terminationStatus, output, Date().timeIntervalSince(start))
}

/// The processes below `root`, from the parent ids in /proc/PID/stat.
func descendants(of root: pid_t) -> [pid_t] {
    var children: [pid_t: [pid_t]] = [:]
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
              let name = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: name)...].split(separator: " ")  // state, parent id, ...
        if fields.count > 1, let parent = pid_t(fields[1]) { children[parent, default: []].append(pid) }
    }
    var found: [pid_t] = [], queue = [root]
    while let pid = queue.popLast() { for child in children[pid] ?? [] { found.append(child); queue.append(child) } }
    return found
}

/// Kills `root`, every process below it and its process group (Foundation starts each command as a group's leader).
/// The tree is stopped first (SIGSTOP), pass by pass until a pass finds no new process, so that none forks or is
/// orphaned (and so lost from the tree) while it is walked.
func killTree(_ root: pid_t) {
    var stopped = Set<pid_t>()
    for _ in 0..<10 {
        let tree = [root] + descendants(of: root)
        let new = tree.filter { !stopped.contains($0) }
        if new.isEmpty { break }
        for pid in new { kill(pid, SIGSTOP) }
        stopped.formUnion(new)
    }
    for pid in stopped { kill(pid, SIGKILL) }
    kill(-root, SIGKILL)
}

/// Runs a built product without mpirun (one rank).
public func runProduct(_ name: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 120)
    throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = productsFolder.appendingPathComponent(name)
    process.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env["OPENBLAS_NUM_THREADS"] = "1"
    for (k, v) in environment { env[k] = v }
    process.environment = env
    let result = try runToEnd(process, timeout: timeout)
    return (result.status, result.output)
}

/// The repository root (tests run from anywhere).
public let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// Folder of the built products (.build/debug or .build/release), found from the test binary's path.
public var productsFolder: URL {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("MPISelfTest").path) {
        url.deleteLastPathComponent()
    }
    return url
}

/// The release build of a product when Launch/setup made one (heavy end-to-end tests), else the debug one.
public func releaseOrDebugProduct(_ name: String) -> String {
    let release = repositoryRoot + "/.build/release/" + name
    return FileManager.default.isExecutableFile(atPath: release) ? release : productsFolder.appendingPathComponent(name).path
}

/// Runs a command (no mpirun) with a wall-clock limit.
public func runCommand(_ executable: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 300)
    throws -> (status: Int32, output: String, seconds: Double) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot)
    var env = ProcessInfo.processInfo.environment
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    for (k, v) in environment { env[k] = v }
    process.environment = env
    return try runToEnd(process, timeout: timeout)
}

/// A class-level fixture (class `setUp`) whose failure is recorded, so that every test of the class fails
/// with its message (`check()` in the instance `setUpWithError`) instead of a crash ending the whole test run.
public final class SuiteFixture: @unchecked Sendable {
    public private(set) var failure: String?
    public init() {}
    /// Runs `body`; a thrown error or a false result with a message is recorded.
    public func run(_ body: () throws -> String?) {
        do { if let message = try body() { failure = message } } catch { failure = "\(error)" }
    }
    public struct Failure: Error, CustomStringConvertible { public let description: String }
    public func check() throws { if let failure { throw Failure(description: "class setUp failed: \(failure)") } }
}
