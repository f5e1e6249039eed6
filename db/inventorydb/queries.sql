-- name: GetServiceInfo :one
select value from service_info where key = @key;

-- name: SetServiceInfo :exec
insert into service_info (key, value)
values (@key, @value)
on conflict (key) do update set value = excluded.value, updated_at = now();
