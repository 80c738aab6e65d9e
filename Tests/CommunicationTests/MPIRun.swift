import Foundation

/// Runs `mpirun -np N [flags] EXECUTABLE ARGS` with a wall-clock limit and returns its status, output
/// and duration. Root and oversubscription flags are added as Launch/ adds them.
func mpirun(np: Int, executable: String, arguments: [String], extraFlags: [String] = [],
            timeout: Double = 60) throws -> (status: Int32, output: String, seconds: Double) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    var flags = ["mpirun", "-np", "\(np)", "--oversubscribe"]
    if getuid() == 0 { flags.append("--allow-run-as-root") }
    process.arguments = flags + extraFlags + ["-x", "OPENBLAS_NUM_THREADS=1", executable] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let start = Date()
    try process.run()
    var data = Data()
    let reader = DispatchQueue(label: "mpirun-output")
    let done = DispatchSemaphore(value: 0)
    reader.async { data = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }
    while process.isRunning && Date().timeIntervalSince(start) < timeout { usleep(20_000) }
    if process.isRunning { process.terminate(); kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    done.wait()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self), Date().timeIntervalSince(start))
}

/// Folder of the built products (.build/debug or .build/release), found from the test binary's path.
var productsFolder: URL {
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("MPISelfTest").path) {
        url.deleteLastPathComponent()
    }
    return url
}
