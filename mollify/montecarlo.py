"""Monte Carlo and quasi-Monte Carlo integration against a kernel, with error bars.

:func:`integrate` estimates E_{u ~ η^d}[f(u)] = ∫ f(u) η(u₁)···η(u_d) du for a vectorized
integrand ``f(points[N, d]) -> [N, ...]`` and returns an :class:`Estimate` (mean ± standard error).

Samplers (:data:`SAMPLERS`):

* ``"mc"`` — independent points u_i = F⁻¹(U_i), U_i uniform.
* ``"antithetic"`` — pairs (u_i, −u_i); the standard error is computed from the pair means, which
  are independent. All kernels here are symmetric, so −u_i ~ η as well.
* ``"qmc"`` — the first n points of the unscrambled Sobol sequence, each coordinate moved to the
  centre of its cell of width 2^{-m}, m = ⌈log₂ n⌉ (so no point sits on 0, and every 1-D projection
  of a power-of-two point set is the midpoint rule), mapped through F⁻¹. Deterministic; there is no
  statistical error bar, so ``stderr`` is NaN.
* ``"rqmc"`` — ``replicates`` independently scrambled Sobol sequences (torch's scrambling: a
  random linear matrix scramble plus a digital shift — not Owen's nested scrambling — seeded
  from the generator), n / replicates points each; the estimate is the mean of the replicate
  means and its standard error is their standard deviation / √replicates.

Reproducibility and chunking. The points are a fixed function of the generator's state at the
call: one 63-bit key is drawn from the generator, and the uniforms of block b (4096 points) come
from a private generator seeded with hash(key, b). Points are computed block by block, and the
running sums are pairwise (tree) sums over aligned power-of-two runs of samples, merged like a
binary counter. Both are therefore bitwise independent of ``chunk_size``: the same generator state
gives the same :class:`Estimate` for every chunk size, provided ``f`` itself computes each row
independently of the batch it comes in (true of elementwise and row-wise torch code).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from mollify._validation import check_choice, check_generator, check_int, check_real
from mollify.kernels import Kernel, kernel as _get_kernel

__all__ = [
    "SAMPLERS",
    "Estimate",
    "PointStream",
    "sample_points",
    "integrate",
]

#: Point samplers accepted by :func:`integrate`, :func:`sample_points` and :class:`PointStream`.
SAMPLERS: tuple[str, ...] = ("mc", "antithetic", "qmc", "rqmc")

# Points are drawn in blocks of `_BLOCK` rows, or fewer when a row is long: a block holds at most
# `_BLOCK_NUMBERS` numbers (8 MiB in float64), so a 224×224×3 image gets blocks of 4 rows. Both
# constants are part of the definition of the stream (its values depend on them): do not change.
_BLOCK = 4096
_BLOCK_NUMBERS = 2**20
_DEFAULT_CHUNK = 2**16
_SOBOL_MAXBIT = 30  # torch.quasirandom.SobolEngine works with 30-bit integers
_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------------------------
# Estimate


def _fmt_pair(mean: float, err: float) -> str:
    """'mean ± err' with as many digits of the mean as the error warrants."""
    err_text = f"{err:.2g}"
    if not math.isfinite(err) or err == 0 or not math.isfinite(mean):
        return f"{mean:.7g} ± {err_text}"
    err = float(err_text)  # digits of the mean down to the last shown digit of the error
    if mean == 0:
        digits = 2
    else:
        digits = max(1, math.floor(math.log10(abs(mean))) - math.floor(math.log10(err)) + 2)
    text = f"{mean:#.{min(digits, 17)}g}"
    if text.endswith("."):
        text = text[:-1]
    return f"{text} ± {err_text}"


@dataclass(frozen=True, eq=False)
class Estimate:
    """A Monte Carlo estimate with its standard error.

    Attributes:
        mean: the estimate, a tensor of any shape (0-d for a scalar integrand).
        stderr: its standard error, same shape (NaN where none is available, e.g. plain QMC).
        n: number of integrand evaluations behind it.

    >>> Estimate(torch.tensor(1.0), torch.tensor(0.01), 100)
    Estimate(1.000 ± 0.01, n=100)
    """

    mean: Tensor
    stderr: Tensor
    n: int

    def __post_init__(self) -> None:
        mean = torch.as_tensor(self.mean)
        stderr = torch.as_tensor(self.stderr, dtype=mean.dtype, device=mean.device)
        if stderr.shape != mean.shape:
            raise ValueError(
                f"stderr must have the shape of mean {tuple(mean.shape)}, got {tuple(stderr.shape)}"
            )
        n = check_int("n", self.n, minimum=0)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "stderr", stderr)
        object.__setattr__(self, "n", n)

    def ci(self, level: float = 0.95) -> tuple[Tensor, Tensor]:
        """Normal-approximation confidence interval mean ± z·stderr, z = Φ⁻¹((1 + level)/2).

        Args:
            level: coverage probability in (0, 1).

        Returns:
            ``(lo, hi)``, tensors shaped like ``mean`` (NaN where ``stderr`` is NaN).

        Raises:
            ValueError: if ``level`` is not in (0, 1).

        >>> lo, hi = Estimate(torch.tensor(0.0), torch.tensor(1.0), 10).ci(0.95)
        >>> round(float(hi), 2)
        1.96
        """
        level = check_real("level", level, low=0, high=1, low_open=True, high_open=True)
        z = float(torch.special.ndtri(torch.tensor(0.5 + 0.5 * level, dtype=torch.float64)))
        return self.mean - z * self.stderr, self.mean + z * self.stderr

    def __repr__(self) -> str:
        if self.mean.numel() == 1:
            body = _fmt_pair(float(self.mean.reshape(())), float(self.stderr.reshape(())))
            if self.mean.dim() > 0:
                body = f"[{body}] shape={tuple(self.mean.shape)}"
        elif 0 < self.mean.numel() <= 6:
            pairs = [
                _fmt_pair(float(m), float(s))
                for m, s in zip(self.mean.flatten().tolist(), self.stderr.flatten().tolist())
            ]
            body = "[" + ", ".join(pairs) + "]"
            if self.mean.dim() > 1:
                body += f" shape={tuple(self.mean.shape)}"
        else:
            finite = self.stderr[torch.isfinite(self.stderr)]
            top = f"{float(finite.max()):.2g}" if finite.numel() else "nan"
            body = f"mean of shape {tuple(self.mean.shape)}, max stderr {top}"
        return f"Estimate({body}, n={self.n})"


# --------------------------------------------------------------------------------------------
# point streams


def _mix(key: int, index: int) -> int:
    """SplitMix64 of (key, index), reduced to 63 bits (a seed for torch.Generator)."""
    z = (key + 0x9E3779B97F4A7C15 * (index + 1)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return z & ((1 << 63) - 1)


def _draw_key(generator: torch.Generator | None) -> int:
    device = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (), generator=generator, device=device))


def _from_normal(kernel: Kernel, z: Tensor, work: torch.dtype) -> Tensor:
    """Standard normal numbers z mapped to ``kernel``'s law, F⁻¹(Φ(z)) computed in ``work``
    precision, returned in z's dtype (z itself for the Gaussian): the one transform behind every
    kernel's normal-based noise, so kernels compared at one seed see common random numbers."""
    if kernel.name == "gaussian":
        return z
    tiny = torch.finfo(work).eps / 4
    prob = torch.special.ndtr(z.to(work)).clamp(tiny, 1 - tiny)
    return kernel.icdf(prob).to(z.dtype)


def _check_dtype(dtype: object) -> torch.dtype:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


def _check_sampler_size(n: int, sampler: str, replicates: int) -> int:
    """Check that n suits the sampler; return the number of replicates (1 unless rqmc)."""
    if sampler == "antithetic" and n % 2:
        raise ValueError(f"n must be even for sampler='antithetic' (pairs u, -u), got n={n}")
    if sampler != "rqmc":
        return 1
    replicates = check_int("replicates", replicates, minimum=2)
    if n % replicates:
        lo = n // replicates * replicates
        raise ValueError(
            f"n must be a multiple of replicates={replicates} for sampler='rqmc', got n={n}; "
            f"use e.g. n={lo + replicates}" + (f" or n={lo}" if lo else "")
        )
    return replicates


def _block_rows(dim: int) -> int:
    """Rows per random block for points of dimension ``dim``: 4096, or the largest power of two
    that keeps a block within 2**20 numbers (at least 1)."""
    rows = max(1, _BLOCK_NUMBERS // dim)
    return min(_BLOCK, 1 << (rows.bit_length() - 1))


class PointStream:
    """The n points u_0, …, u_{n−1} ∈ R^d that a sampler feeds an integrand, computed on demand.

    Layout of the rows (shared by every consumer, e.g. gradient estimators):

    * ``"mc"``: independent rows.
    * ``"antithetic"``: rows 2k and 2k+1 are a pair (z_k, −z_k); n must be even.
    * ``"qmc"``: row i is the i-th (centred) Sobol point.
    * ``"rqmc"``: rows [r·m, (r+1)·m) are replicate r, m = n / replicates; n must be a multiple of
      ``replicates``.

    Any slice ``points(start, stop)`` equals the same rows of ``points(0, n)`` bitwise, which is
    what makes chunked computations independent of the chunk size. The generator is used once, at
    construction (one draw; ``qmc`` draws nothing).

    How a point is made: Sobol points (``"qmc"``, ``"rqmc"``) and ``"mc"``/``"antithetic"``
    points in float64 are u = F⁻¹(U) for uniforms U drawn in float64 (inversion; exact in the
    tails). ``"mc"``/``"antithetic"`` points in float32 — the noise of a network's inputs —
    start from standard normal numbers z drawn by ``torch.randn`` in float32 instead, 5× faster
    than the Gaussian quantile function: the Gaussian kernel uses z, any other kernel
    F⁻¹(Φ(z)) computed in float64. Either way all kernels map the *same* random numbers, so
    kernels compared at one seed see common random numbers.

    Args:
        kernel: a :class:`~mollify.kernels.Kernel` or its name.
        n: number of points (>= 1).
        dim: dimension d (>= 1).
        sampler: one of :data:`SAMPLERS`.
        replicates: number of scrambled replicates for ``"rqmc"`` (>= 2; ignored otherwise).
        generator: source of randomness (torch's global RNG if None).
        device: device of the points (default: the generator's device, else CPU).
        dtype: floating dtype of the points (default float64).

    Raises:
        ValueError: on n < 1, dim < 1, an unknown sampler, odd n for ``"antithetic"``, n not a
            multiple of ``replicates`` for ``"rqmc"``, or more Sobol points/dimensions than
            ``torch.quasirandom.SobolEngine`` supports.
        TypeError: on arguments of the wrong type.

    >>> g = torch.Generator().manual_seed(0)
    >>> p = PointStream("gaussian", 6, dim=2, sampler="antithetic", generator=g).points(0, 6)
    >>> bool((p[0] == -p[1]).all()), tuple(p.shape)
    (True, (6, 2))
    """

    def __init__(
        self,
        kernel: str | Kernel,
        n: int,
        dim: int = 1,
        *,
        sampler: str = "mc",
        replicates: int = 16,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.kernel = _get_kernel(kernel)
        self.n = check_int("n", n, minimum=1)
        self.dim = check_int("dim", dim, minimum=1)
        self.sampler = check_choice("sampler", sampler, SAMPLERS)
        self.dtype = _check_dtype(dtype)
        generator = check_generator(generator)
        if device is not None:
            self.device = torch.device(device)
        elif generator is not None:
            self.device = generator.device
        else:
            self.device = torch.device("cpu")
        self._work = torch.float32 if self.device.type == "mps" else torch.float64
        self.replicates = _check_sampler_size(self.n, self.sampler, replicates)
        self.group_size = self.n // self.replicates
        if self.sampler in ("qmc", "rqmc"):
            if self.dim > torch.quasirandom.SobolEngine.MAXDIM:
                raise ValueError(
                    f"dim must be <= {torch.quasirandom.SobolEngine.MAXDIM} for sampler="
                    f"{self.sampler!r} (Sobol), got {self.dim}"
                )
            if self.group_size > 2**_SOBOL_MAXBIT:
                raise ValueError(
                    f"at most 2**{_SOBOL_MAXBIT} Sobol points per replicate, got {self.group_size}"
                )
        self._key = None if self.sampler == "qmc" else _draw_key(generator)
        self.block_rows = _block_rows(self.dim)
        self._cache: dict[tuple[int, int], Tensor] = {}
        self._engine: torch.quasirandom.SobolEngine | None = None
        self._engine_id: tuple[int, int] | None = None  # (replicate, position)

    def __repr__(self) -> str:
        return (
            f"PointStream({self.kernel.name!r}, n={self.n}, dim={self.dim}, "
            f"sampler={self.sampler!r}, replicates={self.replicates})"
        )

    # ----- blocks
    def _uniform_block(self, r: int, b: int) -> Tensor:
        """Uniforms in (0, 1) of block b of replicate r: shape (rows, dim), work dtype, device.

        A block is one draw of its own seeded generator. Only the rows the stream uses are drawn
        (the last block is short); on the CPU these equal the first rows of a full block.
        """
        lo = b * self.block_rows
        if self.sampler in ("mc", "antithetic"):
            rows = min(self.block_rows, self._base_count() - lo)
            g = torch.Generator(device=self.device).manual_seed(_mix(self._key, b))
            u = torch.rand((rows, self.dim), generator=g, device=self.device, dtype=self._work)
            return u.clamp_min(torch.finfo(self._work).eps / 4)  # no exact 0 → no infinite point
        # Sobol: sequential engine, fast-forwarded when the request is not the next block
        rows = min(self.block_rows, self.group_size - lo)
        if self._engine is None or self._engine_id != (r, lo):
            if self.sampler == "qmc":
                self._engine = torch.quasirandom.SobolEngine(self.dim, scramble=False)
            else:
                seed = _mix(self._key, r) % (2**63 - 1)
                self._engine = torch.quasirandom.SobolEngine(self.dim, scramble=True, seed=seed)
            if lo:
                self._engine.fast_forward(lo)
        u = self._engine.draw(rows, dtype=torch.float64)
        self._engine_id = (r, lo + rows)
        if self.sampler == "qmc":
            m = max(0, math.ceil(math.log2(self.group_size))) if self.group_size > 1 else 0
            shift = 2.0 ** -(min(m, _SOBOL_MAXBIT) + 1)
        else:
            shift = 2.0 ** -(_SOBOL_MAXBIT + 1)
        return (u + shift).to(device=self.device, dtype=self._work)

    def _normal_block(self, b: int) -> Tensor:
        """Points of block b for float32 ``"mc"``/``"antithetic"``: z or F⁻¹(Φ(z)), z ~ N(0, I)."""
        rows = min(self.block_rows, self._base_count() - b * self.block_rows)
        g = torch.Generator(device=self.device).manual_seed(_mix(self._key, b))
        z = torch.randn((rows, self.dim), generator=g, device=self.device, dtype=torch.float32)
        return _from_normal(self.kernel, z, self._work)

    def _base_count(self) -> int:
        return self.n // 2 if self.sampler == "antithetic" else self.group_size

    def _block(self, r: int, b: int) -> Tensor:
        """Points of block b of replicate r (base points for antithetic), cached."""
        key = (r, b)
        pts = self._cache.get(key)
        if pts is None:
            if self.dtype == torch.float32 and self.sampler in ("mc", "antithetic"):
                pts = self._normal_block(b)
            else:
                pts = self.kernel.icdf(self._uniform_block(r, b)).to(self.dtype)
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = pts
        return pts

    def _base(self, r: int, start: int, stop: int) -> Tensor:
        """Rows [start, stop) of the base sequence of replicate r."""
        parts = []
        size = self.block_rows
        for b in range(start // size, (stop - 1) // size + 1):
            blk = self._block(r, b)
            lo = max(start - b * size, 0)
            hi = min(stop - b * size, blk.shape[0])
            parts.append(blk[lo:hi])
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    # ----- public
    def points(self, start: int = 0, stop: int | None = None) -> Tensor:
        """Rows ``start`` to ``stop − 1`` of the point sequence.

        Args:
            start, stop: row range, 0 <= start <= stop <= n (``stop`` defaults to n).

        Returns:
            Tensor of shape ``(stop − start, dim)`` on ``device`` with ``dtype``.

        Raises:
            ValueError: on a range outside [0, n].

        >>> s = PointStream("laplace", 10_000, 2, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.equal(s.points(4000, 4200), s.points()[4000:4200]))
        True
        """
        stop = self.n if stop is None else stop
        start = check_int("start", start, minimum=0)
        stop = check_int("stop", stop, minimum=start)
        if stop > self.n:
            raise ValueError(f"stop must be <= n={self.n}, got {stop}")
        if start == stop:
            return torch.empty((0, self.dim), device=self.device, dtype=self.dtype)
        if self.sampler == "antithetic":
            k0, k1 = start // 2, (stop + 1) // 2
            z = self._base(0, k0, k1)
            both = torch.stack([z, -z], dim=1).reshape(-1, self.dim)
            return both[start - 2 * k0 : stop - 2 * k0]
        m = self.group_size
        parts = []
        for r in range(start // m, (stop - 1) // m + 1):
            lo = max(start - r * m, 0)
            hi = min(stop - r * m, m)
            parts.append(self._base(r, lo, hi))
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def chunks(self, chunk_size: int | None = None) -> Iterator[tuple[int, Tensor]]:
        """Iterate over ``(start, points)`` covering all n rows in order.

        Chunks hold at most ``chunk_size`` rows, never split an antithetic pair (so they hold at
        least 2 rows for ``"antithetic"``) and never straddle two ``"rqmc"`` replicates.

        Args:
            chunk_size: maximum rows per chunk (default 65536).

        >>> s = PointStream("uniform", 10, sampler="qmc")
        >>> [start for start, _ in s.chunks(4)]
        [0, 4, 8]
        """
        size = _DEFAULT_CHUNK
        if chunk_size is not None:
            size = check_int("chunk_size", chunk_size, minimum=1)
        if self.sampler == "antithetic":
            size = max(2, size - size % 2)
        start = 0
        while start < self.n:
            stop = min(start + size, self.n)
            if self.sampler == "rqmc":
                stop = min(stop, (start // self.group_size + 1) * self.group_size)
            yield start, self.points(start, stop)
            start = stop


def sample_points(
    kernel: str | Kernel,
    n: int,
    dim: int = 1,
    *,
    sampler: str = "mc",
    replicates: int = 16,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """All n points of a sampler at once: ``PointStream(...).points(0, n)``.

    See :class:`PointStream` for the row layout (antithetic pairs, rqmc replicates) and the
    arguments. Memory is n × dim; use :meth:`PointStream.chunks` for large n.

    Returns:
        Tensor of shape ``(n, dim)``.

    >>> g = torch.Generator().manual_seed(0)
    >>> sample_points("gaussian", 8, 3, sampler="rqmc", replicates=2, generator=g).shape
    torch.Size([8, 3])
    """
    return PointStream(
        kernel, n, dim, sampler=sampler, replicates=replicates, generator=generator,
        device=device, dtype=dtype,
    ).points(0, n)


# --------------------------------------------------------------------------------------------
# streaming pairwise sums


class _TreeSum:
    """Sum of rows x_0, x_1, … defined as the pairwise tree sum over aligned power-of-two runs.

    Rows may arrive in chunks of any size; the result is bitwise the same, because every node of
    the tree is the IEEE sum of its two children whatever the chunking. The stack holds one partial
    sum per set bit of the count (binary-counter merging), so memory is O(log n) rows.
    """

    def __init__(self) -> None:
        self.count = 0
        self._stack: list[tuple[int, Tensor]] = []  # (level, sum of 2**level rows)

    @staticmethod
    def _tree(rows: Tensor) -> Tensor:
        while rows.shape[0] > 1:
            rows = rows[0::2] + rows[1::2]
        return rows[0]

    def add(self, rows: Tensor) -> None:
        start, off, total = self.count, 0, rows.shape[0]
        while off < total:
            left = total - off
            level = left.bit_length() - 1
            if start:
                level = min(level, (start & -start).bit_length() - 1)
            size = 1 << level
            node = self._tree(rows[off : off + size])
            while self._stack and self._stack[-1][0] == level:
                node = self._stack.pop()[1] + node
                level += 1
            self._stack.append((level, node))
            start += size
            off += size
        self.count = start

    def total(self) -> Tensor:
        acc = None
        for _, node in reversed(self._stack):
            acc = node if acc is None else node + acc
        return acc


# --------------------------------------------------------------------------------------------
# integrate


def _evaluate(fn: Callable[[Tensor], Tensor], pts: Tensor, name: str, dtype: torch.dtype) -> Tensor:
    """Call a vectorized integrand and check its output: shape (N, ...), finite, real."""
    out = fn(pts)
    if not isinstance(out, Tensor):
        try:
            out = torch.as_tensor(out)
        except Exception:
            raise TypeError(
                f"{name} must return a tensor, got {type(out).__name__}"
            ) from None
    rows = pts.shape[0]
    if out.dim() == 0 or out.shape[0] != rows:
        raise ValueError(
            f"{name} must be vectorized: {name}(points) with points of shape (N, d) = "
            f"{tuple(pts.shape)} must return shape (N, ...) with N = {rows}; got "
            f"{tuple(out.shape)}. Write it with batched torch operations over the first axis "
            f"(e.g. points[:, 0] instead of points[0]) or wrap it as "
            f"lambda p: torch.stack([g(q) for q in p])."
        )
    if out.is_complex():
        raise TypeError(f"{name} must return real values, got dtype {out.dtype}")
    out = out.to(device=pts.device, dtype=dtype)
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        k = int(bad.reshape(rows, -1).any(1).sum())
        i = int(bad.reshape(rows, -1).any(1).nonzero()[0])
        raise ValueError(
            f"{name} returned NaN or inf at {k} of {rows} points (first at point "
            f"{pts[i].tolist()}); the integrand must be finite on the kernel's support"
        )
    return out


def integrate(
    f: Callable[[Tensor], Tensor],
    kernel: str | Kernel,
    n: int,
    *,
    dim: int = 1,
    sampler: str = "mc",
    control_variate: tuple[Callable[[Tensor], Tensor], float | Tensor] | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    replicates: int = 16,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Estimate:
    """Estimate E_{u ~ η^d}[f(u)] = ∫ f(u) Π_i η(u_i) du by (quasi-)Monte Carlo, with error bar.

    The estimate is (1/n) Σ_i f(u_i) over the points of :class:`PointStream`; the standard error is
    s/√n with s² the sample variance (of pair means for ``"antithetic"``, of replicate means for
    ``"rqmc"``; NaN for ``"qmc"``, whose error is deterministic and not estimated). Sums and sums
    of squares are accumulated over chunks, so memory does not grow with n, and the result is
    bitwise independent of ``chunk_size`` (see the module docstring).

    Control variate: with ``control_variate=(g, mean_g)``, where E[g(u)] = ``mean_g`` is known,
    the estimate is mean(f) − β (mean(g) − mean_g) with β = Cov(f, g)/Var(g) estimated from the
    same points (per output element; pooled over replicates for ``"rqmc"``). Its standard error is
    that of the residual f − βg (n − 2 degrees of freedom). Estimating β from the same samples
    introduces a bias of order 1/n, negligible next to the O(1/√n) standard error.

    Args:
        f: vectorized integrand; ``f(points)`` with ``points`` of shape ``(N, dim)`` returns a real
            tensor of shape ``(N, ...)``. Called on at most ``chunk_size`` points at a time.
        kernel: a :class:`~mollify.kernels.Kernel` or a name from ``KERNELS``.
        n: number of integrand evaluations (>= 1; even for ``"antithetic"``; a multiple of
            ``replicates`` for ``"rqmc"``).
        dim: dimension d of the points (>= 1).
        sampler: one of :data:`SAMPLERS`.
        control_variate: optional ``(g, mean_g)``: ``g`` vectorized like ``f`` returning the same
            shape as ``f`` (or ``(N,)``), ``mean_g`` its exact mean (number or tensor).
        generator: source of randomness (torch's global RNG if None). Same state → same result.
        chunk_size: maximum points per call of ``f`` (default 65536); does not change the result.
        replicates: number of scrambled replicates for ``"rqmc"`` (>= 2).
        device: device of the points (default: the generator's device, else CPU).
        dtype: floating dtype of the points and of the accumulation (default float64).

    Returns:
        An :class:`Estimate` whose ``mean``/``stderr`` have the shape of one output row of ``f``
        and whose ``n`` is the number of integrand evaluations.

    Raises:
        ValueError: on n < 1, dim < 1, an unknown sampler, n incompatible with the sampler, an
            integrand that is not vectorized (wrong output shape) or returns NaN/inf.
        TypeError: on arguments of the wrong type or an integrand returning a non-tensor.

    >>> g = torch.Generator().manual_seed(0)
    >>> est = integrate(lambda u: torch.cos(u[:, 0]), "gaussian", 4096, generator=g)
    >>> abs(float(est.mean) - math.exp(-0.5)) < 4 * float(est.stderr)
    True
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    stream = PointStream(
        kernel, n, dim, sampler=sampler, replicates=replicates, generator=generator,
        device=device, dtype=dtype,
    )
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    g_fn, mu_g = None, None
    if control_variate is not None:
        if not (isinstance(control_variate, (tuple, list)) and len(control_variate) == 2):
            raise TypeError(
                "control_variate must be a pair (g, mean_g) of a vectorized callable and its "
                f"known mean, got {type(control_variate).__name__}"
            )
        g_fn, mu_g = control_variate
        if not callable(g_fn):
            raise TypeError(f"control_variate[0] must be callable, got {type(g_fn).__name__}")
        mu_g = torch.as_tensor(mu_g, dtype=dtype, device=stream.device)
        if not bool(torch.isfinite(mu_g).all()):
            raise ValueError("control_variate mean_g must be finite")

    antithetic = stream.sampler == "antithetic"
    accs = [_TreeSum() for _ in range(stream.replicates)]
    shift: Tensor | None = None
    shift_g: Tensor | None = None
    out_shape: tuple[int, ...] | None = None
    for start, pts in stream.chunks(chunk_size):
        y = _evaluate(f, pts, "f", dtype)
        if out_shape is None:
            out_shape = tuple(y.shape[1:])
        elif tuple(y.shape[1:]) != out_shape:
            raise ValueError(
                f"f must return the same trailing shape for every chunk: got {tuple(y.shape[1:])} "
                f"after {out_shape}"
            )
        rows = [y]
        if g_fn is not None:
            gy = _evaluate(g_fn, pts, "control_variate g", dtype)
            if gy.dim() == 1 and y.dim() > 1:
                gy = gy.reshape(-1, *([1] * (y.dim() - 1))).expand_as(y)
            if gy.shape != y.shape:
                raise ValueError(
                    f"control variate g must return the shape of f's output {tuple(y.shape)} "
                    f"(or ({y.shape[0]},)), got {tuple(gy.shape)}"
                )
            rows.append(gy)
        if antithetic:
            rows = [0.5 * (v[0::2] + v[1::2]) for v in rows]
        if shift is None:  # first sample of the run: a stable shift for the sums of squares
            shift = rows[0][0].detach().clone()
            if g_fn is not None:
                shift_g = rows[1][0].detach().clone()
        fy = rows[0] - shift
        stats = [fy, fy * fy]
        if g_fn is not None:
            gy = rows[1] - shift_g
            stats += [gy, gy * gy, fy * gy]
        r = start // stream.group_size if stream.sampler == "rqmc" else 0
        accs[r].add(torch.stack(stats, dim=1))

    sums = [acc.total() for acc in accs]
    m = accs[0].count  # samples per run: points, pairs, or points per replicate
    means = [shift + s[0] / m for s in sums]
    sff = [s[1] - s[0] * s[0] / m for s in sums]  # centred sums of squares within each run
    if g_fn is not None:
        means_g = [shift_g + s[2] / m for s in sums]
        sgg = [s[3] - s[2] * s[2] / m for s in sums]
        sfg = [s[4] - s[0] * s[2] / m for s in sums]
        tot_gg, tot_fg = sgg[0], sfg[0]
        for a, b in zip(sgg[1:], sfg[1:]):
            tot_gg, tot_fg = tot_gg + a, tot_fg + b
        positive = tot_gg > 0
        beta = torch.where(positive, tot_fg / torch.where(positive, tot_gg, 1.0), 0.0)
        means = [mf - beta * (mg - mu_g) for mf, mg in zip(means, means_g)]
        resid = [torch.clamp(a - beta * b, min=0.0) for a, b in zip(sff, sfg)]
        dof = m - 2
    else:
        resid = [torch.clamp(a, min=0.0) for a in sff]
        dof = m - 1

    if stream.sampler == "rqmc":
        total = means[0]
        for v in means[1:]:
            total = total + v
        mean = total / stream.replicates
        dev = torch.zeros_like(mean)
        for v in means:
            dev = dev + (v - mean) ** 2
        stderr = torch.sqrt(dev / (stream.replicates - 1) / stream.replicates)
    else:
        mean = means[0]
        if stream.sampler == "qmc" or dof < 1:
            stderr = torch.full_like(mean, math.nan)
        else:
            stderr = torch.sqrt(resid[0] / dof / m)
    return Estimate(mean, stderr, stream.n)
