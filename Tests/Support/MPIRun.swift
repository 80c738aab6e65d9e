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
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let start = Date()
    try process.run()
    let reader = DispatchQueue(label: "mpirun-output")
    let done = DispatchSemaphore(value: 0)
    let box = OutputBox()
    reader.async { box.data = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }
    while process.isRunning && Date().timeIntervalSince(start) < timeout { usleep(20_000) }
    if process.isRunning { process.terminate(); kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    return (process.terminationStatus, awaitOutput(done, box), Date().timeIntervalSince(start))
}

final class OutputBox: @unchecked Sendable { var data = Data() }

/// The output read to its end, waiting at most 60 s once the process has ended: a process it started that outlived it
/// (ranks or a renderer left by a kill at the time limit) may hold the pipe open for ever, and the test run with it.
func awaitOutput(_ done: DispatchSemaphore, _ box: OutputBox) -> String {
    guard done.wait(timeout: .now() + 60) == .success else {
        return "(no output: a process the command started still held its output open 60 s after the command ended)"
    }
    return String(decoding: box.data, as: UTF8.self)
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
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let box = OutputBox()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue(label: "product-output").async { box.data = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }
    let start = Date()
    while process.isRunning && Date().timeIntervalSince(start) < timeout { usleep(20_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    return (process.terminationStatus, awaitOutput(done, box))
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
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let start = Date()
    try process.run()
    let box = OutputBox()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue(label: "command-output").async { box.data = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }
    while process.isRunning && Date().timeIntervalSince(start) < timeout { usleep(20_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    return (process.terminationStatus, awaitOutput(done, box), Date().timeIntervalSince(start))
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
