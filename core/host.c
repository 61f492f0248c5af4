/* being written */
#include "host.h"
