defmodule Munition.Native do
  @moduledoc false
  # The NIF stubs and their loading, nothing else. The engine's NIFs are
  # called only by the runtimes: Munition.Runtime.Wasmtime, and
  # Munition.Runtime.Wasmi its `wasmi_*` ones; everything else reaches an
  # engine through the Munition.Runtime behaviour. Three groups are not an
  # engine's and have one caller each, whatever the runtime: the codec and
  # scans of captured memory (`zstd_*`, `memory_*`), called by
  # Munition.Forensics.Memory; the fuel meter's counters (`meter_*`),
  # called by Munition.Fuel.Meter and its Histogram; and a pool's places
  # (`pool_*`), called by Munition.Pool.

  @on_load :load_nif

  def load_nif do
    path = :filename.join(:code.priv_dir(:munition), ~c"native/munition_native")

    case :erlang.load_nif(path, 0) do
      :ok ->
        :ok

      {:error, {reason, text}} ->
        IO.warn("""
        Munition could not load its native library (#{reason}): #{text}
        Expected it at #{path}.so. `mix compile` puts it there: built with Rust's
        cargo, or a precompiled NIF when a base URL is configured (see the
        getting-started guide); then run `mix deps.compile munition --force`.
        """)

        :ok
    end
  end

  def module_lookup(_bytes, _cache_capacity, _limits), do: :erlang.nif_error(:nif_not_loaded)
  def module_lookup_dirty(_bytes, _cache_capacity, _limits), do: :erlang.nif_error(:nif_not_loaded)

  def module_compile_start(_bytes, _hash, _cache_capacity, _limits, _disk_dir, _tag),
    do: :erlang.nif_error(:nif_not_loaded)

  def module_compile_cancel(_ticket), do: :erlang.nif_error(:nif_not_loaded)
  def module_compile_stats, do: :erlang.nif_error(:nif_not_loaded)
  def module_cache_stats, do: :erlang.nif_error(:nif_not_loaded)
  def module_disk_cache_stats, do: :erlang.nif_error(:nif_not_loaded)
  def module_cache_clear, do: :erlang.nif_error(:nif_not_loaded)
  def instance_new(_module, _config), do: :erlang.nif_error(:nif_not_loaded)
  def instance_call(_instance, _function, _params), do: :erlang.nif_error(:nif_not_loaded)
  def instance_resume(_instance), do: :erlang.nif_error(:nif_not_loaded)
  def instance_memory_read(_instance, _ptr, _len), do: :erlang.nif_error(:nif_not_loaded)
  def instance_memory_read_dirty(_instance, _ptr, _len), do: :erlang.nif_error(:nif_not_loaded)
  def instance_memory_write(_instance, _ptr, _bytes), do: :erlang.nif_error(:nif_not_loaded)
  def instance_memory_write_dirty(_instance, _ptr, _bytes), do: :erlang.nif_error(:nif_not_loaded)
  def instance_capture(_instance, _mode), do: :erlang.nif_error(:nif_not_loaded)
  def snapshot_instrument(_bytes), do: :erlang.nif_error(:nif_not_loaded)
  def instance_snapshot(_instance, _wasm, _provenance), do: :erlang.nif_error(:nif_not_loaded)
  def component_instance_snapshot(_instance, _wasm, _provenance), do: :erlang.nif_error(:nif_not_loaded)
  def instance_cleanup(_instance), do: :erlang.nif_error(:nif_not_loaded)
  def instance_cleanup_dirty(_instance), do: :erlang.nif_error(:nif_not_loaded)
  def instance_live_count, do: :erlang.nif_error(:nif_not_loaded)
  def instance_reaped, do: :erlang.nif_error(:nif_not_loaded)
  def instance_slice_pauses, do: :erlang.nif_error(:nif_not_loaded)
  def host_reply(_call, _reply, _result_types), do: :erlang.nif_error(:nif_not_loaded)
  def host_read(_call, _ptr, _len), do: :erlang.nif_error(:nif_not_loaded)
  def host_write(_call, _ptr, _bytes), do: :erlang.nif_error(:nif_not_loaded)
  def memory_search(_haystack, _pattern, _limit), do: :erlang.nif_error(:nif_not_loaded)
  def zstd_decompress(_data, _max_size), do: :erlang.nif_error(:nif_not_loaded)
  def zstd_compress(_data), do: :erlang.nif_error(:nif_not_loaded)
  def engine_info, do: :erlang.nif_error(:nif_not_loaded)
  def engine_configure(_config), do: :erlang.nif_error(:nif_not_loaded)
  def host_builtins, do: :erlang.nif_error(:nif_not_loaded)
  def zstd_frame_size(_data), do: :erlang.nif_error(:nif_not_loaded)
  def memory_regions(_haystack, _min_gap, _limit), do: :erlang.nif_error(:nif_not_loaded)
  def memory_diff(_a, _b, _min_gap, _limit), do: :erlang.nif_error(:nif_not_loaded)

  def memory_strings(_haystack, _min_len, _max_len, _utf8, _limit),
    do: :erlang.nif_error(:nif_not_loaded)

  # The fuel meter's counters (native/munition_native/src/nif/meter.rs).
  def meter_new(_layout, _now_ms), do: :erlang.nif_error(:nif_not_loaded)
  def meter_record(_counters, _outcome, _fuel, _time_us), do: :erlang.nif_error(:nif_not_loaded)

  def meter_record_at(_counters, _outcome, _fuel, _time_us, _now_ms),
    do: :erlang.nif_error(:nif_not_loaded)

  def meter_get(_counters, _index), do: :erlang.nif_error(:nif_not_loaded)
  def meter_read(_counters), do: :erlang.nif_error(:nif_not_loaded)
  def meter_bytes(_counters), do: :erlang.nif_error(:nif_not_loaded)
  def meter_bucket(_value, _histogram), do: :erlang.nif_error(:nif_not_loaded)
  def pool_places_new(_size), do: :erlang.nif_error(:nif_not_loaded)
  def pool_place_take(_places), do: :erlang.nif_error(:nif_not_loaded)
  def pool_place_return(_place), do: :erlang.nif_error(:nif_not_loaded)
  def pool_places_in_use(_places), do: :erlang.nif_error(:nif_not_loaded)

  # Components on Wasmtime (native/munition_native/src/engine/component).
  def component_lookup(_bytes, _cache_capacity, _limits), do: :erlang.nif_error(:nif_not_loaded)
  def component_lookup_dirty(_bytes, _cache_capacity, _limits), do: :erlang.nif_error(:nif_not_loaded)

  def component_compile_start(_bytes, _hash, _cache_capacity, _limits, _disk_dir, _tag),
    do: :erlang.nif_error(:nif_not_loaded)

  def component_compile_cancel(_ticket), do: :erlang.nif_error(:nif_not_loaded)
  def component_cache_stats, do: :erlang.nif_error(:nif_not_loaded)
  def component_live_count, do: :erlang.nif_error(:nif_not_loaded)
  def component_instance_new(_module, _config), do: :erlang.nif_error(:nif_not_loaded)
  def component_instance_call(_instance, _function, _params), do: :erlang.nif_error(:nif_not_loaded)
  def component_instance_resume(_instance), do: :erlang.nif_error(:nif_not_loaded)
  def component_instance_capture(_instance, _mode), do: :erlang.nif_error(:nif_not_loaded)
  def component_instance_cleanup(_instance), do: :erlang.nif_error(:nif_not_loaded)
  def component_instance_cleanup_dirty(_instance), do: :erlang.nif_error(:nif_not_loaded)
  def component_host_reply(_call, _reply), do: :erlang.nif_error(:nif_not_loaded)

  # The Wasmi engine (native/munition_native/src/engine/wasmi).
  def wasmi_engine_info, do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_live_count, do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_module_lookup(_bytes, _cache_capacity, _limits), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_module_lookup_dirty(_bytes, _cache_capacity, _limits), do: :erlang.nif_error(:nif_not_loaded)

  def wasmi_module_compile_start(_bytes, _hash, _cache_capacity, _limits, _tag),
    do: :erlang.nif_error(:nif_not_loaded)

  def wasmi_module_compile_cancel(_ticket), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_module_cache_stats, do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_new(_module, _config), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_call(_instance, _function, _params), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_resume(_instance), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_memory_read(_instance, _ptr, _len), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_memory_read_dirty(_instance, _ptr, _len), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_memory_write(_instance, _ptr, _bytes), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_memory_write_dirty(_instance, _ptr, _bytes), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_capture(_instance, _mode), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_cleanup(_instance), do: :erlang.nif_error(:nif_not_loaded)
  def wasmi_instance_cleanup_dirty(_instance), do: :erlang.nif_error(:nif_not_loaded)
end
