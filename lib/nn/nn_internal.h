/* Private helpers shared by the nn layer's files. */
#ifndef MNAS_NN_INTERNAL_H
#define MNAS_NN_INTERNAL_H

#include <mnas/nn.h>

/* The context a parameter set was made with. */
mnas_ctx *mnas__params_ctx(const mnas_params *p);
/* Drop the parameters from index count on (undoing a partial add). */
void mnas__params_truncate(mnas_params *p, size_t count);

#endif /* MNAS_NN_INTERNAL_H */
