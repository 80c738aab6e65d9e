import Config
import Foundation
import Support
import TrialData

/// Warns (on standard error) when `ids` (trials of `file` that a command trains, selects or pretrains on, after its
/// exclusions) hold TOP test trials, the ids of the bundled `ConfigSchema.heldOutList`: the case of a data.exclude_file
/// emptied or pointed at another list. `role` says what they do ("train the model"). Says nothing when none does, when
/// data.exclude_file is the bundled list, or when that list is not found (`bundledHeldOutList`).
public func warnOfUnexcludedTestTrials(_ ids: [String], file: String, excludeFile: String?, role: String) {
    if let warning = unexcludedTestTrialsWarning(ids, file: file, excludeFile: excludeFile, role: role) {
        standardErrorWrite(Data((warning + "\n").utf8))
    }
}

/// The bundled list of TOP test trials: `ConfigSchema.heldOutList` from the current folder (the repository root the
/// Launch scripts run in), else in the repository this binary was built in (the folder above its .build holding
/// Package.swift and that list: a command run from another folder is checked too; a probe had found 8 test trials
/// trained on without a word that way); nil when neither is there (an installed binary, another benchmark).
func bundledHeldOutList() -> String? {
    if FileManager.default.fileExists(atPath: ConfigSchema.heldOutList) { return ConfigSchema.heldOutList }
    var dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    for _ in 0..<5 where dir.path != "/" {
        dir.deleteLastPathComponent()
        let list = dir.path + "/" + ConfigSchema.heldOutList
        if FileManager.default.fileExists(atPath: dir.path + "/Package.swift") && FileManager.default.fileExists(atPath: list) { return list }
    }
    return nil
}

/// The warning of `warnOfUnexcludedTestTrials`, or nil.
func unexcludedTestTrialsWarning(_ ids: [String], file: String, excludeFile: String?, role: String) -> String? {
    guard let bundled = bundledHeldOutList(),
          excludeFile.map({ resolvedPath($0) != resolvedPath(bundled) }) ?? true,
          let test = try? readExclusionList(bundled) else { return nil }
    let leaked = ids.filter(test.contains)
    guard let first = leaked.first else { return nil }
    return "warning: \(leaked.count) trial(s) of \(file) (\(first)\(leaked.count > 1 ? ", ..." : "")) are TOP test trials (\(bundled)) that "
        + "data.exclude_file (\(excludeFile ?? "none")) does not remove: they \(role); figures on TOP's test splits would not be out of "
        + "sample (set data.exclude_file to a list that holds them)"
}
