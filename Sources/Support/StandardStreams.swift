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

/// Nil when everything printed on the standard output was written (it is flushed here), or when its reader went away
/// (EPIPE: `cladmop config --markdown | head -1`, where the default SIGPIPE would have ended the command quietly);
/// else the reason (`cmd > /dev/full`: "No space left on device"): a command whose printed result was lost must not
/// exit 0.
public func standardOutputFailure() -> String? {
    errno = 0
    if fflush(stdout) != 0 { return errno == EPIPE ? nil : String(cString: strerror(errno)) }
    if ferror(stdout) != 0 { return "a write failed" }
    return nil
}
