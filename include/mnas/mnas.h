/** @file
 * @brief libmnas — meta neural architecture search. One include for the whole API. */
#ifndef MNAS_MNAS_H
#define MNAS_MNAS_H

#include <mnas/version.h>
#include <mnas/core.h>
#include <mnas/tensor.h>
#include <mnas/autodiff.h>
#include <mnas/data.h>
#include <mnas/nn.h>
#include <mnas/nas.h>
#include <mnas/meta.h>
#include <mnas/io.h>

#endif /* MNAS_MNAS_H */
