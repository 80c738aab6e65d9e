import Foundation

/// The memory this process may use: the machine's physical memory, or less where a control group caps it (how Slurm,
/// Docker, Kubernetes and systemd give a job its share of a node). The limit is the smallest of the physical memory
/// and every `memory.max` (cgroup v2) or `memory.limit_in_bytes` (cgroup v1) of the process's control group and the
/// groups above it that this process can see ("max" and v1's near-2^63 "unlimited" do not limit).
///
/// The group is the one /proc/self/cgroup names for the v2 hierarchy (the line "0::PATH") or the v1 hierarchy whose
/// controllers include memory; where that hierarchy is mounted, and which group the mount shows at its root, comes
/// from /proc/self/mountinfo. Inside a container without a cgroup namespace the mount's root is the container's own
/// group (`/docker/ID`) while the path names the process's group from the host's root (`/docker/ID/slurm/job_12`):
/// the folder read is the mount point plus the path below that root.
public struct MemoryLimit: Sendable, Equatable {
    /// The limit in bytes.
    public var bytes: Double
    /// What sets it, for messages: "this machine's memory" or "the control group /slurm/job_12 (memory.max)".
    public var source: String

    /// The limit of the calling process. The three paths are parameters for tests (a fake tree of files); a file
    /// that is missing or does not hold a number is no limit.
    public static func current(physical: Double = Double(ProcessInfo.processInfo.physicalMemory),
                               procCgroup: String = "/proc/self/cgroup", mountinfo: String = "/proc/self/mountinfo") -> MemoryLimit {
        var best = MemoryLimit(bytes: physical, source: "this machine's memory")
        guard let groups = try? String(contentsOfFile: procCgroup, encoding: .utf8),
              let mounts = try? String(contentsOfFile: mountinfo, encoding: .utf8) else { return best }
        // The process's group in each hierarchy: v2's (no controllers) and v1's memory one.
        var v2: String?, v1: String?
        for line in groups.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/") else { continue }
            if fields[0] == "0" && fields[1].isEmpty { v2 = String(fields[2]) }
            else if fields[1].split(separator: ",").contains("memory") { v1 = String(fields[2]) }
        }
        // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS".
        for line in mounts.split(whereSeparator: \.isNewline) {
            let fields = line.split(separator: " ").map(String.init)
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, dash + 1 < fields.count else { continue }
            let root = unescapeMountField(fields[3]), point = unescapeMountField(fields[4]), type = fields[dash + 1]
            let superOptions = dash + 3 < fields.count ? fields[dash + 3].split(separator: ",") : []
            let group: String?, file: String
            if type == "cgroup2" { group = v2; file = "memory.max" }
            else if type == "cgroup" && superOptions.contains("memory") { group = v1; file = "memory.limit_in_bytes" }
            else { continue }
            // The process's group below the mount's root; a group outside it (another namespace's view) is not seen.
            guard let group, let below = pathBelow(group, root: root) else { continue }
            var components = below
            while true {
                let path = point + (components.isEmpty ? "" : "/" + components.joined(separator: "/")) + "/" + file
                if let bytes = limitValue(path), bytes < best.bytes {
                    let name = (root == "/" ? "" : root) + (components.isEmpty ? "" : "/" + components.joined(separator: "/"))
                    best = MemoryLimit(bytes: bytes, source: "the control group \(name.isEmpty ? "/" : name) (\(file))")
                }
                if components.isEmpty { break }
                components.removeLast()
            }
        }
        return best
    }

    /// The components of `path` below `root` ([] for the root itself); nil when `path` is not inside `root`.
    static func pathBelow(_ path: String, root: String) -> [String]? {
        let p = path.split(separator: "/").map(String.init), r = root.split(separator: "/").map(String.init)
        // A group outside a cgroup namespace's root shows as "/../x": not below the mount.
        guard !p.contains(".."), !r.contains(".."), p.count >= r.count, Array(p.prefix(r.count)) == r else { return nil }
        return Array(p.dropFirst(r.count))
    }

    /// A mountinfo field with its octal escapes (`\040` for a space, `\011`, `\012`, `\134`) decoded.
    static func unescapeMountField(_ field: String) -> String {
        let u = Array(field.utf8)
        var bytes: [UInt8] = [], i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "\\"), i + 3 < u.count, let v = UInt8(String(decoding: u[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(v); i += 4
            } else { bytes.append(u[i]); i += 1 }
        }
        return String(decoding: bytes, as: UTF8.self)
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
