import Support
import Foundation

/// An OpenMPI hostfile, checked before `mpirun` sees it (mpirun's own errors do not name the line).
/// Each non-blank line is `[USER@]HOST [slots=N] [max_slots=M]` (also `max-slots`); `#` starts a comment; N, M
/// unsigned whole numbers, N >= 1 (default 1: mpirun may count a node's cores instead, so give slots=N), M >= N;
/// a host appears once, and this machine once under any of its names (localhost, 127.x.x.x, its host name, the
/// addresses of its interfaces: mpirun refuses two slot counts for one node). A subset of what mpirun reads:
/// `count=`, `cpu=` and one line per slot are refused, naming the line, rather than guessed at. Lines may end with LF, CR LF or CR and the text may start with a UTF-8
/// byte-order mark: the parser reads them all alike (so content errors name the right line), but Open MPI's
/// mpirun (4.1) cannot parse CR line endings or a byte-order mark, so `init(path:)` refuses them, naming the line.
public struct Hostfile {
    public struct Host: Equatable { public var name: String; public var slots: Int; public var maxSlots: Int?; public var line: Int }
    public let path: String
    public let hosts: [Host]
    public var totalSlots: Int { hosts.reduce(0) { $0 + $1.slots } }
    /// The most slots (or max_slots) one host may give: 2^20, far beyond any node, so that sums never overflow.
    public static let maxSlots = 1 << 20

    public init(path: String) throws {
        let text = try readTextLines(path, what: "hostfile", limit: 16 << 20)
        try self.init(lines: text.lines, path: path)
        let why = "Open MPI's mpirun cannot parse it"
        if text.hadByteOrderMark {
            throw InputError(file: path, line: 1, "starts with a UTF-8 byte-order mark; \(why): remove it (e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' \(path)`)")
        }
        if let line = text.firstCRLFLine {
            throw InputError(file: path, line: line, "ends with CR LF (Windows line endings); \(why): convert the file to LF line endings (e.g. `sed -i 's/\\r$//' \(path)`)")
        }
        if let line = text.firstCRLine {
            throw InputError(file: path, line: line, "ends with a lone CR (old Mac line endings); \(why): convert the file to LF line endings (e.g. `tr '\\r' '\\n'`)")
        }
        let names = Self.namesOfThisMachine()
        let local = hosts.filter { Self.isThisMachine($0.name, names: names) }
        if local.count > 1 {
            throw InputError(file: path, line: local[1].line, "host \(local[1].name) and host \(local[0].name) (line \(local[0].line)) are both this machine; "
                             + "mpirun refuses two slot counts for one node: give it one line with its total slots")
        }
    }

    /// This machine's names, lower-cased: its host name (and the short form of a fully qualified one) and the IPv4
    /// addresses of its interfaces. No name is looked up (a resolver could wait).
    static func namesOfThisMachine() -> (names: Set<String>, short: String?) {
        var names: Set<String> = [], short: String?
        var buffer = [CChar](repeating: 0, count: 256)
        if gethostname(&buffer, buffer.count) == 0 {
            let own = String(cString: buffer).lowercased()
            if !own.isEmpty { names.insert(own); short = own.split(separator: ".").first.map(String.init); names.insert(short!) }
        }
        var list: UnsafeMutablePointer<ifaddrs>?
        if getifaddrs(&list) == 0 {
            var p = list
            while let a = p {
                if let sa = a.pointee.ifa_addr, sa.pointee.sa_family == sa_family_t(AF_INET) {
                    var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
                    var addr = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                    if inet_ntop(AF_INET, &addr, &text, socklen_t(INET_ADDRSTRLEN)) != nil { names.insert(String(cString: text)) }
                }
                p = a.pointee.ifa_next
            }
            freeifaddrs(list)
        }
        return (names, short)
    }

    /// Whether hostfile name `name` is this machine: localhost, an address of 127.0.0.0/8, one of `names`, or a
    /// fully qualified name whose first label is this machine's short host name (node01.cluster for node01).
    static func isThisMachine(_ name: String, names: (names: Set<String>, short: String?)) -> Bool {
        let n = name.lowercased(), labels = n.split(separator: ".", omittingEmptySubsequences: false)
        if n == "localhost" || n.hasPrefix("localhost.") { return true }
        if labels.count == 4, labels[0] == "127", labels.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }) { return true }
        if names.names.contains(n) { return true }
        // An IPv4 address in any form the resolver takes (`127.1`, `0.0.0.0`, `0x7f.1`): a probe's `localhost` and
        // `127.1` had passed as two hosts, which mpirun then refused with an internal error (status 1).
        var address = in_addr()
        if n.allSatisfy({ $0.isHexDigit || $0 == "." || $0 == "x" }), inet_aton(n, &address) != 0 {
            let value = UInt32(bigEndian: address.s_addr)
            if value >> 24 == 127 || value == 0 { return true }
            let dotted = [24, 16, 8, 0].map { String((value >> UInt32($0)) & 0xff) }.joined(separator: ".")
            if names.names.contains(dotted) { return true }
        }
        if let short = names.short, labels.count > 1, labels[0] == short, !labels[0].allSatisfy(\.isNumber) { return true }
        return false
    }

    /// `text` with every character but printable ASCII written as \u{...}: a no-break space in a line had shown as a
    /// plain one ("node1 slots=2" is not a host name).
    static func visible(_ text: String) -> String {
        text.unicodeScalars.map { (0x21...0x7e).contains($0.value) ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
    }

    init(lines: [String], path: String) throws {
        self.path = path
        var hosts: [Host] = [], firstLine: [String: Int] = [:]
        // What mpirun 4.1 launches on: "ascii letters, digits, dots, and the hyphen" (it reads '_', ':' and non-ASCII
        // letters from the file, then refuses them when it starts; IPv6 addresses included).
        let hostCharacters = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
        for (i, raw) in lines.enumerated() {
            let line = i + 1
            let words = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
                .split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let entry = words.first else { continue }
            // `user@host`: mpirun logs in as that user; the host name is checked as any other.
            let at = entry.lastIndex(of: "@"), user = at.map { String(entry[..<$0]) }, name = at.map { String(entry[entry.index(after: $0)...]) } ?? entry
            if let user, user.isEmpty || !user.unicodeScalars.allSatisfy(CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-").contains) {
                throw InputError(file: path, line: line, "\"\(entry.prefix(64))\": expected USER@HOST with a user name of ASCII letters, digits, '.', '_' and '-'")
            }
            // A name starts with a letter or digit (`-np` on a line of its own is an argument that strayed in).
            guard name.unicodeScalars.allSatisfy(hostCharacters.contains), name.utf8.count <= 253,
                  name.first.map({ $0.isLetter || $0.isNumber }) == true, !name.contains("..") else {
                let shown = name.count > 64 ? "\(Self.visible(String(name.prefix(64))))... (\(name.utf8.count) bytes)" : Self.visible(name)
                throw InputError(file: path, line: line, "\"\(shown)\" is not a host name (at most 253 ASCII letters, digits, '.' and '-', starting with a letter or digit, no empty label (..), as mpirun needs; slots are given as slots=N, not host:N; IPv6 addresses are not usable in an OpenMPI 4 hostfile)")
            }
            // Host names are case-insensitive (DNS): NODE1 and node1 would put two daemons on one machine, and for
            // local names mpirun refuses the two slot counts.
            if let previous = firstLine[name.lowercased()] {
                throw InputError(file: path, line: line, "host \(name) is already listed on line \(previous); give it one line with its total slots")
            }
            // Errors show each key as the file spells it (max_slots or max-slots); `seen` holds the one spelling.
            var host = Host(name: name, slots: 1, maxSlots: nil, line: line), seen = Set<String>(), maxSlotsKey = "max_slots"
            for word in words.dropFirst() {
                let kv = word.split(separator: "=", maxSplits: 1).map(String.init)
                let key = kv.first == "max-slots" ? "max_slots" : kv.first ?? ""
                guard kv.count == 2, ["slots", "max_slots"].contains(key) else {
                    // `slots = 2` (which mpirun reads) is three words here.
                    let spaced = ["slots", "max_slots", "=", "="].contains(key) || word.hasPrefix("=") ? "; write it without spaces around '='" : ""
                    throw InputError(file: path, line: line, "\"\(Self.visible(word))\" after host \(name): expected slots=N or max_slots=N (or max-slots=N)\(spaced)")
                }
                guard !seen.contains(key) else { throw InputError(file: path, line: line, "\(kv[0]) given twice for host \(name)") }
                seen.insert(key)
                if key == "max_slots" { maxSlotsKey = kv[0] }
                // Digits only: mpirun reads `slots=+2` as a negative count and refuses it.
                let digits = !kv[1].isEmpty && kv[1].allSatisfy({ $0.isASCII && $0.isNumber })
                guard digits, kv[1].contains(where: { $0 != "0" }) else {
                    throw InputError(file: path, line: line, "\(kv[0])=\(Self.visible(kv[1])) for host \(name): expected a whole number >= 1")
                }
                // Beyond Int (99999999999999999999) is too many as well, not "not a number".
                guard let n = Int(kv[1]), n <= Self.maxSlots else {
                    throw InputError(file: path, line: line, "\(kv[0])=\(kv[1]) for host \(name): at most \(Self.maxSlots) per host")
                }
                if key == "slots" { host.slots = n } else { host.maxSlots = n }
            }
            if let m = host.maxSlots, m < host.slots {
                throw InputError(file: path, line: line, "\(maxSlotsKey)=\(m) is below slots=\(host.slots) for host \(name)")
            }
            firstLine[name.lowercased()] = line
            hosts.append(host)
        }
        guard !hosts.isEmpty else { throw InputError(file: path, "hostfile lists no host (expected lines like `node01 slots=32`)") }
        self.hosts = hosts
    }

    /// Checks that `ranks` processes fit in the slots (mpirun refuses more without --oversubscribe).
    public func check(ranks: Int) throws {
        guard ranks >= 1 else { throw InputError("-np \(ranks): expected at least 1 rank") }
        guard ranks <= totalSlots else {
            throw InputError(file: path, "-np \(ranks) needs more slots than the \(totalSlots) this hostfile gives (\(hosts.map { "\($0.name) slots=\($0.slots)" }.joined(separator: ", ")); a host without slots=N counts 1)")
        }
    }
}
