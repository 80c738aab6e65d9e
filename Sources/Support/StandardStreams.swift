import Foundation

/// Writes `data` to the standard error (descriptor 2), ignoring failures: a message must not end the command when
/// stderr is full or closed (`2>/dev/full`), where `FileHandle.standardError.write` traps.
public func standardErrorWrite(_ data: Data) {
    data.withUnsafeBytes { (p: UnsafeRawBufferPointer) in
        guard let base = p.baseAddress else { return }
        var offset = 0
        while offset < p.count {
            let n = write(2, base + offset, p.count - offset)
            if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }
}

/// Opens /dev/null on any of the standard descriptors 0, 1, 2 that is closed (`cladmop ... >&-`): a file opened later
/// would take its number, and progress lines or messages would be written into it.
public func openClosedStandardDescriptors() {
    for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
        let opened = open("/dev/null", O_RDWR)
        if opened >= 0 && opened != fd { dup2(opened, fd); close(opened) }
    }
}

/// The first error of a flush of the standard output (`flushStandardOutput`), kept for `standardOutputFailure`: by the
/// end of a command that printed as it went, errno no longer says why an earlier write failed.
nonisolated(unsafe) private var firstStandardOutputError: Int32 = 0

/// Flushes what was printed on the standard output, noting the first failure (a full disk, a reader that went away).
/// SIGPIPE is ignored (`main`): a reader that went away (`cladmop evaluate ... | head -1`) is EPIPE here, and the
/// command goes on to write its results, instead of being killed part way (its --json lost, a run left half made).
public func flushStandardOutput() {
    errno = 0
    if fflush(stdout) != 0 && firstStandardOutputError == 0 { firstStandardOutputError = errno == 0 ? EIO : errno }
}

/// Whether the standard output is a pipe or socket whose reader has gone (poll reports POLLERR on its write end).
func standardOutputReaderGone() -> Bool {
    var st = stat()
    guard fstat(STDOUT_FILENO, &st) == 0, (st.st_mode & S_IFMT) == S_IFIFO || (st.st_mode & S_IFMT) == S_IFSOCK else { return false }
    var p = pollfd(fd: STDOUT_FILENO, events: Int16(POLLOUT), revents: 0)
    return poll(&p, 1, 0) == 1 && (Int32(p.revents) & (POLLERR | POLLHUP)) != 0
}

/// Nil when everything printed on the standard output was written (it is flushed here), or when its reader went away
/// (EPIPE: `cladmop config --markdown | head -1`: not an error, the command's results are written all the same);
/// else the reason (`cmd > /dev/full`: "No space left on device"): a command whose printed result was lost must not
/// exit 0.
public func standardOutputFailure() -> String? {
    flushStandardOutput()
    let failed = firstStandardOutputError
    if failed != 0 { return failed == EPIPE ? nil : String(cString: strerror(failed)) }
    if ferror(stdout) != 0 { return standardOutputReaderGone() ? nil : "a write failed" }
    return nil
}
