// plada_edge._native: thin pybind11 wrappers over the C++ kernels.
//
// Every function here has a numpy twin with the identical signature in plada_edge/core/twins.py;
// tests/test_energy.py, test_selection.py, test_reference.py and test_payload.py hold the two to the
// same answers. Argument checks raise the same
// exception types as the twins, and the GIL is released while the kernels run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>

#include "codec.h"
#include "dispatch.h"
#include "gather.h"
#include "select.h"
#include "kernels.h"

namespace py = pybind11;

namespace {

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

py::tuple energy_stats(py::array logits, double temperature, int threads,
                       const std::string& nan_policy) {
  const py::dtype dt = logits.dtype();
  if (dt.kind() != 'f' || (dt.itemsize() != 4 && dt.itemsize() != 2)) {
    throw py::type_error("logits must be float32 or float16, got " +
                         std::string(py::str(dt)));
  }
  if (logits.ndim() != 2) {
    throw py::value_error("logits must be 2-D (N, C), got shape " + shape_str(logits));
  }
  if (!(std::isfinite(temperature) && temperature > 0.0)) {
    throw py::value_error("temperature must be a finite number > 0, got " +
                          std::to_string(temperature));
  }
  if (nan_policy != "raise" && nan_policy != "flag") {
    throw py::value_error("nan_policy must be 'raise' or 'flag', got '" + nan_policy + "'");
  }
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all CPUs)");
  const int64_t n = logits.shape(0), C = logits.shape(1);
  if (C < 1) throw py::value_error("logits need at least one class column, got shape " + shape_str(logits));

  const bool half = dt.itemsize() == 2;
  // Non-contiguous input is copied once into C order.
  py::array data = py::array::ensure(logits, py::array::c_style);
  if (!data) throw py::error_already_set();

  py::array_t<float> energy(n), entropy(n);
  py::array_t<uint8_t> flags(n);
  const int label_bytes = plada::label_bytes_for(C);
  py::array label = label_bytes == 1   ? py::array(py::array_t<uint8_t>(n))
                    : label_bytes == 2 ? py::array(py::array_t<uint16_t>(n))
                                       : py::array(py::array_t<uint32_t>(n));
  const void* src = data.data();
  plada::EnergyOut out{energy.mutable_data(), label.mutable_data(), label_bytes,
                       entropy.mutable_data(), flags.mutable_data()};
  const plada::EnergyRowsFn rows = plada::energy_rows_fn();
  const int64_t item = half ? 2 : 4;
  {
    py::gil_scoped_release release;
    // ~64 KiB of logits per task at least, so tiny inputs stay on one thread.
    const int64_t min_rows = (16384 + C - 1) / C;
    plada::parallel_for(n, min_rows, threads, [&](int64_t begin, int64_t end) {
      plada::EnergyOut o{out.energy + begin,
                         static_cast<char*>(out.label) + begin * label_bytes, label_bytes,
                         out.entropy + begin, out.flags + begin};
      rows(static_cast<const char*>(src) + begin * C * item, half, end - begin, C,
           static_cast<float>(temperature), o);
    });
  }
  if (nan_policy == "raise") {
    const uint8_t* f = flags.data();
    for (int64_t i = 0; i < n; ++i) {
      if (f[i] & plada::kFlagPosInf) {
        throw py::value_error("logits row " + std::to_string(i) +
                              " contains +inf (or overflows at this temperature); pass "
                              "nan_policy='flag' to flag such rows instead of raising");
      }
    }
  }
  return py::make_tuple(energy, label, entropy, flags);
}

py::array gather_rows(py::array images, py::array indices, int threads) {
  if (images.ndim() < 1) throw py::value_error("images must have a leading row axis");
  if (!(images.flags() & py::array::c_style)) throw py::value_error("images must be C-contiguous (a pack memmap is)");
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all CPUs)");
  const py::dtype it = indices.dtype();
  if (it.kind() != 'i' && it.kind() != 'u') {
    throw py::type_error("indices must be integers, got " + std::string(py::str(it)));
  }
  if (indices.ndim() != 1) throw py::value_error("indices must be 1-D, got shape " + shape_str(indices));
  py::array_t<int64_t, py::array::c_style | py::array::forcecast> idx(indices);
  const int64_t n = images.shape(0), k = idx.shape(0);
  const int64_t* ip = idx.data();
  for (int64_t j = 0; j < k; ++j) {
    if (ip[j] < 0 || ip[j] >= n) {
      throw py::index_error("index " + std::to_string(ip[j]) + " out of range for a pack of " +
                            std::to_string(n) + " images");
    }
  }
  std::vector<py::ssize_t> shape(images.shape(), images.shape() + images.ndim());
  shape[0] = k;
  py::array out(images.dtype(), shape);
  const int64_t row_bytes = n ? static_cast<int64_t>(images.nbytes() / n) : 0;
  const auto* src = static_cast<const uint8_t*>(images.data());
  auto* dst = static_cast<uint8_t*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    plada::gather_rows(src, row_bytes, ip, k, dst, threads);
  }
  return out;
}

struct SelectInputs {
  py::array_t<float, py::array::c_style> scores;
  py::array_t<uint8_t, py::array::c_style> exclude;
  bool has_exclude = false;
};

SelectInputs check_select(py::array scores, py::object exclude, int threads) {
  SelectInputs in;
  if (scores.dtype().kind() != 'f' || scores.dtype().itemsize() != 4) {
    throw py::type_error("scores must be float32, got " + std::string(py::str(scores.dtype())));
  }
  if (scores.ndim() != 1) throw py::value_error("scores must be 1-D, got shape " + shape_str(scores));
  if (scores.shape(0) >= (int64_t(1) << 32)) throw py::value_error("at most 2^32 - 1 rows are supported");
  if (threads < 0) throw py::value_error("threads must be >= 0 (0 = all CPUs)");
  in.scores = py::array_t<float, py::array::c_style>::ensure(scores);
  if (!exclude.is_none()) {
    py::array ex = py::array::ensure(exclude);
    if (!ex || ex.ndim() != 1 || ex.shape(0) != scores.shape(0)) {
      throw py::value_error("exclude must be a 1-D array with one entry per score");
    }
    in.exclude = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(ex.attr("astype")("uint8"));
    in.has_exclude = true;
  }
  return in;
}

py::array_t<int64_t> to_array(std::vector<int64_t>&& v) {
  py::array_t<int64_t> out(static_cast<py::ssize_t>(v.size()));
  std::copy(v.begin(), v.end(), out.mutable_data());
  return out;
}

py::array_t<int64_t> topk_binding(py::array scores, int64_t k, py::object exclude, bool largest, int threads) {
  if (k < 0) throw py::value_error("k must be >= 0, got " + std::to_string(k));
  SelectInputs in = check_select(scores, exclude, threads);
  std::vector<int64_t> out;
  {
    py::gil_scoped_release release;
    out = plada::topk(in.scores.data(), in.scores.shape(0), k, in.has_exclude ? in.exclude.data() : nullptr,
                      largest, threads);
  }
  return to_array(std::move(out));
}

py::array_t<int64_t> class_topk_binding(py::array scores, py::array labels, py::array quotas, py::object exclude,
                                        bool largest, int threads) {
  SelectInputs in = check_select(scores, exclude, threads);
  const py::dtype lt = labels.dtype();
  if (lt.kind() != 'u' || (lt.itemsize() != 1 && lt.itemsize() != 2 && lt.itemsize() != 4)) {
    throw py::type_error("labels must be uint8, uint16 or uint32, got " + std::string(py::str(lt)));
  }
  if (labels.ndim() != 1 || labels.shape(0) != scores.shape(0)) {
    throw py::value_error("labels must be 1-D with one entry per score");
  }
  if (quotas.ndim() != 1) throw py::value_error("quotas must be 1-D (one per class)");
  py::array_t<int64_t, py::array::c_style | py::array::forcecast> q(quotas);
  for (py::ssize_t c = 0; c < q.shape(0); ++c) {
    if (q.data()[c] < 0) throw py::value_error("quotas must be >= 0");
  }
  py::array lab = py::array::ensure(labels, py::array::c_style);
  std::vector<int64_t> out;
  int64_t bad = -1;
  {
    py::gil_scoped_release release;
    out = plada::class_topk(in.scores.data(), lab.data(), static_cast<int>(lt.itemsize()), in.scores.shape(0),
                            q.data(), q.shape(0), in.has_exclude ? in.exclude.data() : nullptr, largest, threads,
                            &bad);
  }
  if (bad >= 0) {
    throw py::value_error("labels row " + std::to_string(bad) + " is >= the number of classes (" +
                          std::to_string(q.shape(0)) + ")");
  }
  return to_array(std::move(out));
}

constexpr int64_t kMaxModelClasses = int64_t(1) << 24;

py::bytes model_encode_binding(py::array indices, py::array labels, uint64_t n, int64_t c) {
  if (c < 1 || c > kMaxModelClasses) throw py::value_error("the model codec needs 1 <= C <= 2^24, got " + std::to_string(c));
  if (n >= (uint64_t(1) << 32)) throw py::value_error("the model codec supports N < 2^32");
  py::array_t<int64_t, py::array::c_style | py::array::forcecast> idx(indices), lab(labels);
  if (idx.ndim() != 1 || lab.ndim() != 1 || idx.shape(0) != lab.shape(0)) {
    throw py::value_error("indices and labels must be 1-D and of equal length");
  }
  const int64_t k = idx.shape(0);
  const int64_t* ip = idx.data();
  const int64_t* lp = lab.data();
  for (int64_t i = 0; i < k; ++i) {
    if (ip[i] < 0 || static_cast<uint64_t>(ip[i]) >= n || (i && ip[i] <= ip[i - 1])) {
      throw py::value_error("indices must be strictly increasing and in [0, N): item " + std::to_string(i));
    }
    if (lp[i] < 0 || lp[i] >= c) throw py::value_error("label out of range at item " + std::to_string(i));
  }
  std::string out;
  {
    py::gil_scoped_release release;
    out = plada::model_encode(ip, lp, k, c);
  }
  return py::bytes(out);
}

py::tuple model_decode_binding(py::bytes body, uint64_t n, int64_t c, int64_t k) {
  if (c < 1 || c > kMaxModelClasses) throw py::value_error("the model codec needs 1 <= C <= 2^24, got " + std::to_string(c));
  if (k < 0 || static_cast<uint64_t>(k) > n) throw py::value_error("k must be in [0, N]");
  std::string_view view(body);
  py::array_t<int64_t> idx(k), lab(k);
  int64_t* ip = idx.mutable_data();
  int64_t* lp = lab.mutable_data();
  std::string error;
  {
    py::gil_scoped_release release;
    try {
      plada::model_decode(reinterpret_cast<const uint8_t*>(view.data()), view.size(), n, c, k, ip, lp);
    } catch (const std::exception& exc) {
      error = exc.what();
    }
  }
  if (!error.empty()) throw py::value_error(error);
  return py::make_tuple(idx, lab);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "plada-edge native kernels (see plada_edge.core.native for the Python face)";
  m.def("energy_stats", &energy_stats, py::arg("logits"), py::arg("temperature") = 1.0,
        py::arg("threads") = 0, py::arg("nan_policy") = "raise",
        "Per row of (N, C) logits: energy -T*logsumexp(z/T) (float32), argmax label (smallest "
        "unsigned type fitting C), softmax entropy (float32) and flag bits (uint8).");
  m.def("gather_rows", &gather_rows, py::arg("images"), py::arg("indices"), py::arg("threads") = 0,
        "images[indices] for a C-contiguous array (e.g. a pack memmap): reads rows in ascending "
        "index order, returns them in the caller's order, threads split the copy.");
  m.def("topk", &topk_binding, py::arg("scores"), py::arg("k"), py::arg("exclude") = py::none(),
        py::arg("largest") = false, py::arg("threads") = 0,
        "Indices of the k smallest (largest) float32 scores in rank order; ties to the lower index; "
        "excluded and NaN rows are never picked.");
  m.def("class_topk", &class_topk_binding, py::arg("scores"), py::arg("labels"), py::arg("quotas"),
        py::arg("exclude") = py::none(), py::arg("largest") = false, py::arg("threads") = 0,
        "For each class c, the quotas[c] best rows labelled c, grouped by ascending class, each in rank order.");
  m.def("model_encode", &model_encode_binding, py::arg("indices"), py::arg("labels"), py::arg("n"), py::arg("c"),
        "Encode sorted indices + labels with the adaptive 'model' codec (bytes).");
  m.def("model_decode", &model_decode_binding, py::arg("body"), py::arg("n"), py::arg("c"), py::arg("k"),
        "Decode k (index, label) pairs of the 'model' codec; ValueError on any inconsistency.");
  m.def("simd_level", &plada::simd_level, "The instruction set the kernels use now.");
  m.def("available_simd", &plada::available_simd, "Instruction sets this CPU supports, best first.");
  m.def("set_simd_level", &plada::set_simd_level, py::arg("level"),
        "Switch the kernels to another available instruction set (for tests and benchmarks).");
  m.def("hardware_threads", &plada::hardware_threads, "CPUs this process may run on.");
  m.attr("FLAG_NAN") = static_cast<int>(plada::kFlagNaN);
  m.attr("FLAG_POSINF") = static_cast<int>(plada::kFlagPosInf);
  m.attr("FLAG_EMPTY") = static_cast<int>(plada::kFlagEmpty);
}
