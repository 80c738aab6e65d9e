import Communication
import Foundation

/// Ends the job when a rank makes no progress for `timeout` seconds (a stalled peer leaves the others
/// waiting in a collective forever): MPI_Abort with a message saying so. 0 disables it.
final class Watchdog: @unchecked Sendable {
    private var last = Date()
    private let lock = NSLock()
    private var running = true
    private let timeout: Double

    init(timeout: Double, comm: Communicator) {
        self.timeout = timeout
        guard timeout > 0 else { running = false; return }
        let thread = Thread { [self] in
            while true {
                sleep(1)
                lock.lock(); let idle = Date().timeIntervalSince(last); let on = running; lock.unlock()
                if !on { return }
                if idle > timeout {
                    comm.abort(message: String(format: "no training progress for %.0f s on rank %d (a rank stalled or a collective is stuck; train.stall_timeout)", idle, comm.rank), code: 1)
                }
            }
        }
        thread.start()
    }
    func beat() { lock.lock(); last = Date(); lock.unlock() }
    func stop() { lock.lock(); running = false; lock.unlock() }
}
