// Declarations only (include/CLibFuzzer.h): the driver itself comes from libFuzzer's runtime at link time.
#include "CLibFuzzer.h"
