import Foundation

/// The memory this process may use: the machine's physical memory, or less where a control group caps it (how Slurm,
/// Docker, Kubernetes and systemd give a job its share of a node). The limit is the smallest of the physical memory
/// and every `memory.max` (cgroup v2) or `memory.limit_in_bytes` (cgroup v1) of the process's control group and the
/// groups above it, as listed in /proc/self/cgroup ("max" and v1's near-2^63 "unlimited" do not limit).
public struct MemoryLimit: Sendable, Equatable {
    /// The limit in bytes.
    public var bytes: Double
    /// What sets it, for messages: "this machine's memory" or "the control group /slurm/job_12 (memory.max)".
    public var source: String

    /// The limit of the calling process. `procCgroup` and `cgroupRoot` are parameters for tests (a tree of files
    /// laid out like /sys/fs/cgroup); a file that is missing or does not hold a number is no limit.
    public static func current(physical: Double = Double(ProcessInfo.processInfo.physicalMemory),
                               procCgroup: String = "/proc/self/cgroup", cgroupRoot: String = "/sys/fs/cgroup") -> MemoryLimit {
        var best = MemoryLimit(bytes: physical, source: "this machine's memory")
        guard let text = try? String(contentsOfFile: procCgroup, encoding: .utf8) else { return best }
        // Lines "ID:CONTROLLERS:PATH": v2's has no controllers; v1's memory hierarchy lists "memory".
        for line in text.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/") else { continue }
            let path = String(fields[2])
            let mounts: [(base: String, file: String)]
            if fields[1].isEmpty {
                mounts = [(cgroupRoot, "memory.max"), (cgroupRoot + "/unified", "memory.max")]
            } else if fields[1].split(separator: ",").contains("memory") {
                mounts = [(cgroupRoot + "/memory", "memory.limit_in_bytes")]
            } else { continue }
            for mount in mounts {
                // The group and each one above it, up to the mount (inside a container the mount's root may be the
                // container's own group, which the path, as seen from outside, passes through).
                var components = path.split(separator: "/").map(String.init)
                while true {
                    let group = "/" + components.joined(separator: "/")
                    let file = mount.base + (components.isEmpty ? "" : group) + "/" + mount.file
                    if let bytes = limitValue(file), bytes < best.bytes {
                        best = MemoryLimit(bytes: bytes, source: "the control group \(group) (\(mount.file))")
                    }
                    if components.isEmpty { break }
                    components.removeLast()
                }
            }
        }
        return best
    }

    /// The number of bytes in a control group's limit file; nil for "max", v1's "unlimited" (2^63 rounded down to a
    /// page) or anything that is not a number.
    static func limitValue(_ file: String) -> Double? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8),
              let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)), value < 1 << 62 else { return nil }
        return Double(value)
    }
}

/// A size for messages: "12.3 GiB", or "256 MiB" below a GiB.
public func describeBytes(_ bytes: Double) -> String {
    bytes >= 1_073_741_824 ? String(format: "%.1f GiB", bytes / 1_073_741_824) : String(format: "%.0f MiB", bytes / 1_048_576)
}
