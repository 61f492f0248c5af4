/* being written */
#include "daemon.h"
