// libFuzzer's driver runs the fuzzing loop; SwiftPM gives every executable its own `main`, so this one hands over.
import CLibFuzzer
import Glibc

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in trickleRelayFuzzOneInput(data, size) })
